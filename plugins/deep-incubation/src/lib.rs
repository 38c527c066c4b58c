//! The paper's method (Ni et al., "Deep Model Assembling", arXiv 2212.04129) as the reference
//! implementation of each plugin interface:
//! - meta design: the target's width with one block per module;
//! - incubation: target module i, randomly initialised, replaces meta module i; task loss only;
//! - assembly: the incubated modules stacked in order, nothing added (glue such as stitches
//!   that another strategy trained with a module is left out).

use incubator_core::sdk::net::{Init, Network};
use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "deep-incubation";

pub struct OneBlockMeta;

impl MetaDesign for OneBlockMeta {
    fn name(&self) -> &str {
        NAME
    }

    fn build(&self, ctx: &PluginContext, init: &mut Init) -> Result<Network, PluginError> {
        Ok(Network::vit(init, ctx.vit, &vec![1; ctx.split.k()]))
    }
}

pub struct ModuleIncubation;

impl IncubationStrategy for ModuleIncubation {
    fn name(&self) -> &str {
        NAME
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        let (net, trained) = parts::splice(inputs.meta, inputs.module, inputs.unit)?;
        Ok(Hybrid::new(net, trained, task_loss()))
    }
}

pub struct Stacking;

impl AssemblyRule for Stacking {
    fn name(&self) -> &str {
        NAME
    }

    fn assemble(
        &self,
        _ctx: &PluginContext,
        units: Vec<Network>,
        _meta: Network,
    ) -> Result<Network, PluginError> {
        // A unit may carry glue trained with its module (stitches); stacking keeps only the
        // modules themselves, whose widths match.
        Ok(parts::concat(units, |p| p.depth() > 0))
    }
}

/// Registers the three reference plugins (the engine's built-ins, or this crate's library).
pub fn register(r: &mut Registrar) {
    r.add_meta_design(Arc::new(OneBlockMeta));
    r.add_strategy(Arc::new(ModuleIncubation));
    r.add_assembly(Arc::new(Stacking));
}

declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
