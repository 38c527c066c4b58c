//! DGL, decoupled greedy learning (Belilovsky et al., ICML 2020), as an incubation strategy:
//! each module is trained with its own auxiliary classifier on the frozen output of the
//! modules before it (DGL's sequential-greedy variant: module i starts when modules 0..i are
//! done), on the cross-entropy of the auxiliary classifier (weight 1). The last module trains
//! with the real head. No meta model. Assembly stacks the modules and drops the auxiliary
//! classifiers (`assembly = "deep-incubation"`), as DGL's test-time network does.
//!
//! Option: `[plugins.options] aux_hidden = 1`, the auxiliary classifier's hidden layers (DGL's
//! `mlp-sr` uses 3 on conv features).

use incubator_core::anyhow;
use incubator_core::model::{Init, Network};
use incubator_core::plugin::{
    parts, task_loss, Hybrid, HybridInputs, IncubationStrategy, OptionSpec, PluginContext,
    Registrar,
};
use std::sync::Arc;

pub const NAME: &str = "dgl";

pub struct Dgl;

impl IncubationStrategy for Dgl {
    fn name(&self) -> &str {
        NAME
    }

    fn options(&self) -> Vec<OptionSpec> {
        vec![parts::aux_hidden_option()]
    }

    fn uses_meta(&self, _ctx: &PluginContext) -> bool {
        false
    }

    /// Every earlier module: module i learns on their frozen output.
    fn depends_on(&self, _ctx: &PluginContext, i: usize) -> Vec<usize> {
        (0..i).collect()
    }

    fn init_unit(&self, ctx: &PluginContext, i: usize, init: &mut Init) -> anyhow::Result<Network> {
        parts::module_with_aux_classifier(ctx, i, init)
    }

    fn hybrid(&self, _ctx: &PluginContext, mut inputs: HybridInputs) -> anyhow::Result<Hybrid> {
        let (net, trained) =
            parts::after_finished_modules(&mut inputs.finished, inputs.module, inputs.unit)?;
        // The path ends in the auxiliary classifier (or the real head): its logits are the
        // task loss's, and the stage's test accuracy is the classifier's.
        Ok(Hybrid::new(net, trained, task_loss()))
    }
}

pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(Dgl));
}

incubator_core::declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
