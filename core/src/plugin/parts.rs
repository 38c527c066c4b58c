//! Building blocks that most plugins share: the target's ViT module as a unit, and splicing a
//! unit into a network in place of one part.

use super::{PluginContext, PluginError};
use crate::model::aux_heads::AuxClassifier;
use crate::model::{Init, Module, Named, Network};

type Result<T> = std::result::Result<T, PluginError>;

/// Target module `i` of the split, randomly initialised, as a one-part unit (the reference's
/// incubation unit): module 0 brings the stem, module K-1 the final norm and head.
pub fn target_module(ctx: &PluginContext, i: usize, init: &mut Init) -> Network {
    let depths = &ctx.split.divided_depths;
    Network::from_parts(vec![Module::new(init, ctx.vit, i, depths.len(), depths[i])])
}

/// Target module `i` followed by an auxiliary classifier on its output tokens (named
/// `aux_heads.{i}`, with `hidden` hidden layers), except for the last module, which has the
/// real head: the unit of the module-wise baselines (DGL, InfoPro). The classifier has no
/// blocks, so stacking drops it at assembly.
pub fn module_with_aux_classifier(
    ctx: &PluginContext,
    i: usize,
    init: &mut Init,
    hidden: usize,
) -> Network {
    let v = ctx.vit;
    module_with_aux_head(ctx, i, init, |init| {
        AuxClassifier::new(init, v.embed_dim, v.num_classes, hidden, v.norm_eps)
    })
}

/// Target module `i` followed by the auxiliary head `make` builds (named `aux_heads.{i}`),
/// except for the last module, which has the real head. A head has no blocks, so stacking
/// drops it at assembly.
pub fn module_with_aux_head<L: crate::model::Layer + 'static>(
    ctx: &PluginContext,
    i: usize,
    init: &mut Init,
    make: impl FnOnce(&mut Init) -> L,
) -> Network {
    let mut unit = target_module(ctx, i, init);
    if i + 1 < ctx.split.k() {
        let head = make(init);
        unit.parts
            .push(Box::new(Named::new(format!("aux_heads.{i}"), head)));
    }
    unit
}

/// Greedy module-wise training's hybrid: the finished modules `0..i` (their blocks only,
/// frozen, run without gradients), then module `i`'s unit. Returns the network and the
/// unit's range.
pub fn after_finished_modules(
    finished: &mut std::collections::BTreeMap<usize, Network>,
    i: usize,
    unit: Network,
) -> Result<(Network, std::ops::Range<usize>)> {
    let mut net = Network { parts: Vec::new() };
    for j in 0..i {
        let done = take_finished(finished, j)?;
        net.parts
            .extend(done.parts.into_iter().filter(|p| p.depth() > 0));
    }
    let start = net.parts.len();
    net.parts.extend(unit.parts);
    let end = net.parts.len();
    Ok((net, start..end))
}

/// Finished module `j`'s unit, taken out of [`super::HybridInputs::finished`].
pub fn take_finished(
    finished: &mut std::collections::BTreeMap<usize, Network>,
    j: usize,
) -> Result<Network> {
    finished.remove(&j).ok_or_else(|| {
        PluginError::Refused(format!(
            "module {j} was not handed over (depends_on must name it)"
        ))
    })
}

/// `net` with part `i` replaced by all parts of `unit`; returns the network and the range the
/// unit occupies in it.
pub fn splice(
    mut net: Network,
    i: usize,
    unit: Network,
) -> Result<(Network, std::ops::Range<usize>)> {
    if i >= net.parts.len() {
        crate::refuse!(
            "cannot replace part {i} of a network with {} parts; the meta design must give one part per module",
            net.parts.len()
        );
    }
    let n = unit.parts.len();
    net.parts.splice(i..i + 1, unit.parts);
    Ok((net, i..i + n))
}

/// The units' parts in order, as one network (`keep` chooses which parts stay).
pub fn concat(units: Vec<Network>, keep: impl Fn(&dyn crate::model::Part) -> bool) -> Network {
    Network {
        parts: units
            .into_iter()
            .flat_map(|u| u.parts)
            .filter(|p| keep(p.as_ref()))
            .collect(),
    }
}

/// Checks that a meta model has one part per module, as the one-part-per-module strategies
/// assume.
pub fn expect_one_part_per_module(ctx: &PluginContext, meta: &Network) -> Result<()> {
    if meta.parts.len() != ctx.split.k() {
        crate::refuse!(
            "needs a meta model with one part per module ({}), got {} parts (meta_design = {:?})",
            ctx.split.k(),
            meta.parts.len(),
            ctx.cfg.plugins.meta_design
        );
    }
    Ok(())
}

/// Copies into `dst` every parameter of `src` whose name, mapped by `rename`, `dst` has with
/// the same shape; returns how many were copied. E.g. tiling a one-block meta layer into a
/// three-block module: `rename` maps `blocks.2.attn.qkv.weight` to `blocks.0.attn.qkv.weight`.
pub fn copy_matching(
    dst: &mut dyn crate::model::Part,
    src: &dyn crate::model::Part,
    rename: impl Fn(&str) -> String,
) -> usize {
    use crate::model::ParamMut;
    let mut from = Vec::new();
    src.params_at(0, &mut from);
    let from: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> = from
        .into_iter()
        .map(|(n, p)| (n, (p.shape(), p.to_vec())))
        .collect();
    let mut to = Vec::new();
    dst.params_mut_at(0, &mut to);
    let mut copied = 0;
    for (name, param) in to {
        let Some((shape, values)) = from.get(&rename(&name)) else {
            continue;
        };
        if *shape != param.as_ref().shape() {
            continue;
        }
        match param {
            ParamMut::Vector(t) => t.copy_from(values),
            ParamMut::Matrix(t) => t.copy_from(values),
        }
        copied += 1;
    }
    copied
}

/// `blocks.{j}.rest` -> `blocks.0.rest` (other names unchanged): a one-block part's name for
/// any block of a deeper one.
pub fn first_block(name: &str) -> String {
    match name.strip_prefix("blocks.").and_then(|r| r.split_once('.')) {
        Some((_, rest)) => format!("blocks.0.{rest}"),
        None => name.to_string(),
    }
}
