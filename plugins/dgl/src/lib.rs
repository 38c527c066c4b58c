//! DGL, decoupled greedy learning (Belilovsky et al., ICML 2020), as an incubation strategy:
//! each module is trained with its own auxiliary classifier on the frozen output of the
//! modules before it (DGL's sequential-greedy variant: module i starts when modules 0..i are
//! done), on the cross-entropy of the auxiliary classifier (weight 1). The last module trains
//! with the real head. No meta model. Assembly stacks the modules and drops the auxiliary
//! classifiers (`assembly = "deep-incubation"`), as DGL's test-time network does.
//!
//! Options: `[plugins.options] aux_head = "mlp-sr"` (the default of DGL's code: the patch grid
//! pooled, three 1x1 convolutions and three Linear layers with BatchNorm and ReLU, here per
//! token with LayerNorm; [`incubator_core::sdk::heads::DglHead`]) or `"linear"`
//! (LayerNorm, the token mean, `aux_hidden` Linear+GELU layers, a Linear). DGL's protocol
//! reports the stacked modules without fine-tuning: the report's "stacked, no fine-tune" row.

use incubator_core::sdk::heads::DglHead;
use incubator_core::sdk::net::{Init, Network};
use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "dgl";

plugin_options! {
    /// the auxiliary classifier
    #[derive(Clone, Copy, Debug, PartialEq, Default)]
    pub enum AuxHead {
        /// DGL's default: 3 convolutions (per token) and 3 MLP layers
        #[default]
        MlpSr,
        /// LayerNorm, the token mean, aux_hidden hidden layers, a Linear
        Linear,
    }
}

plugin_options! {
    pub struct DglOptions {
        pub aux_head: AuxHead,
        /// hidden Linear+GELU layers of each auxiliary classifier (aux_head = "linear")
        #[schemars(range(max = 8))]
        pub aux_hidden: usize,
    }
}

impl Default for DglOptions {
    fn default() -> Self {
        DglOptions {
            aux_head: AuxHead::MlpSr,
            aux_hidden: 1,
        }
    }
}

impl PluginOptions for DglOptions {}

pub struct Dgl;

impl IncubationStrategy for Dgl {
    fn name(&self) -> &str {
        NAME
    }

    fn options(&self) -> OptionSet {
        OptionSet::of::<DglOptions>()
    }

    fn uses_meta(&self, _ctx: &PluginContext) -> bool {
        false
    }

    /// Every earlier module: module i learns on their frozen output.
    fn depends_on(&self, _ctx: &PluginContext, i: usize) -> Vec<usize> {
        (0..i).collect()
    }

    fn init_unit(
        &self,
        ctx: &PluginContext,
        i: usize,
        init: &mut Init,
    ) -> Result<Network, PluginError> {
        let o: DglOptions = ctx.options()?;
        let v = ctx.vit;
        Ok(match o.aux_head {
            AuxHead::MlpSr => parts::module_with_aux_head(ctx, i, init, |init| {
                DglHead::new(init, v.embed_dim, v.grid(), v.num_classes, v.norm_eps)
            }),
            AuxHead::Linear => parts::module_with_aux_classifier(ctx, i, init, o.aux_hidden),
        })
    }

    fn hybrid(
        &self,
        _ctx: &PluginContext,
        mut inputs: HybridInputs,
    ) -> Result<Hybrid, PluginError> {
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

declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
