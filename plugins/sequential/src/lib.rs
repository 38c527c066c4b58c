//! Sequential incubation: modules are incubated in order, and each finished module replaces its
//! meta layer in the hybrids of the modules after it, so module i learns to work with the
//! trained modules 0..i rather than with their meta stand-ins. The pipeline (and a cluster's
//! job dependencies) run module i after modules 0..i.

use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "sequential";

pub struct Sequential;

impl IncubationStrategy for Sequential {
    fn name(&self) -> &str {
        NAME
    }

    /// Every earlier module: all of them are in module i's hybrid.
    fn depends_on(&self, _ctx: &PluginContext, i: usize) -> Vec<usize> {
        (0..i).collect()
    }

    fn hybrid(&self, ctx: &PluginContext, mut inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        let i = inputs.module;
        let mut net = inputs.meta;
        for j in 0..i {
            let unit = parts::take_finished(&mut inputs.finished, j)?;
            net = parts::splice(net, j, unit)?.0;
        }
        let (net, trained) = parts::splice(net, i, inputs.unit)?;
        Ok(Hybrid::new(net, trained, task_loss()))
    }
}

pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(Sequential));
}

declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
