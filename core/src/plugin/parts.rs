//! Building blocks that most plugins share: the target's ViT module as a unit, and splicing a
//! unit into a network in place of one part.

use super::PluginContext;
use crate::model::{Init, Module, Network};

/// Target module `i` of the split, randomly initialised, as a one-part unit (the reference's
/// incubation unit): module 0 brings the stem, module K-1 the final norm and head.
pub fn target_module(ctx: &PluginContext, i: usize, init: &mut Init) -> Network {
    let depths = &ctx.split.divided_depths;
    Network::from_parts(vec![Module::new(init, ctx.vit, i, depths.len(), depths[i])])
}

/// `net` with part `i` replaced by all parts of `unit`; returns the network and the range the
/// unit occupies in it.
pub fn splice(
    mut net: Network,
    i: usize,
    unit: Network,
) -> anyhow::Result<(Network, std::ops::Range<usize>)> {
    if i >= net.parts.len() {
        anyhow::bail!(
            "cannot replace part {i} of a network with {} parts; the meta design must give one part per module",
            net.parts.len()
        );
    }
    let n = unit.parts.len();
    net.parts.splice(i..i + 1, unit.parts);
    Ok((net, i..i + n))
}

/// Checks that a meta model has one part per module, as the one-part-per-module strategies
/// assume.
pub fn expect_one_part_per_module(ctx: &PluginContext, meta: &Network) -> anyhow::Result<()> {
    if meta.parts.len() != ctx.split.k() {
        anyhow::bail!(
            "needs a meta model with one part per module ({}), got {} parts (meta_design = {:?})",
            ctx.split.k(),
            meta.parts.len(),
            ctx.cfg.plugins.meta_design
        );
    }
    Ok(())
}

/// A plugin setting from `[plugins.options]`, or `default` when absent.
pub fn option_f64(ctx: &PluginContext, key: &str, default: f64) -> anyhow::Result<f64> {
    match ctx.cfg.plugins.options.get(key) {
        None => Ok(default),
        Some(toml::Value::Float(v)) => Ok(*v),
        Some(toml::Value::Integer(v)) => Ok(*v as f64),
        Some(other) => anyhow::bail!("plugins.options.{key} = {other} must be a number"),
    }
}
