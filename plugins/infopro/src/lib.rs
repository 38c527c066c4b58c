//! InfoPro (Wang et al., ICLR 2021), local learning with information-propagation losses, as an
//! incubation strategy: each module but the last is trained on the frozen output of the
//! modules before it with `recon_weight * reconstruction + local_weight * local loss`, where a
//! decoder (an extra network trained with the module, dropped afterwards) rebuilds the
//! network's input patches from the module's output tokens, and the local loss is, as in the
//! authors' code and every command of their scripts, the supervised contrastive loss
//! (temperature 0.07) on the module's tokens through InfoPro's `1c2f` head with 128 outputs
//! (`local_loss = "contrast"`), or the cross-entropy of the same head with the classes as
//! outputs (`"cross-entropy"`). As in the reference, the weights interpolate linearly from
//! (`recon_first`, `local_first`) at module 0 to (`recon_last`, `local_last`) at module K-2; the
//! last module trains with the real head on plain CE. No meta model; assembly stacks the
//! modules (decoders and heads are left out). InfoPro's protocol reports the stacked modules
//! without fine-tuning: the report's "stacked, no fine-tune" row.
//!
//! A module trained on the contrastive loss has no classifier: it carries a linear probe
//! behind a stop-gradient (trained on the cross-entropy, term `probe`, without touching the
//! module), which is what its stage's accuracy measures.
//!
//! Options (`[plugins.options]`, defaults from the reference's K = 4 setting): `recon_first =
//! 1.0`, `recon_last = 0.0`, `local_first = 0.0`, `local_last = 1.0`, `local_loss =
//! "contrast"`, `temperature = 0.07`, `feature_dim = 128`.
//! Differences from the reference: the decoder is LayerNorm + Linear per patch token and its
//! loss is the mean squared error against the normalised input patches (the reference
//! upsamples conv features and takes a BCE against the de-normalised image); the head's
//! convolution is a Linear on every token and its BatchNorm a LayerNorm; modules train one
//! after another rather than all at once.

use incubator_core::sdk::heads::{InfoProHead, LinearProbe, PatchDecoder};
use incubator_core::sdk::loss::{mse, supervised_contrastive, LossInputs, LossTerms};
use incubator_core::sdk::net::{Init, Named, Network, Role};
use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "infopro";

pub struct InfoPro;

plugin_options! {
    /// the local loss of the modules before the last
    #[derive(Clone, Copy, Debug, PartialEq, Default)]
    pub enum LocalLoss {
        /// the supervised contrastive loss on the head's features (the reference's)
        #[default]
        Contrast,
        /// the cross-entropy of the head's logits
        CrossEntropy,
    }
}

plugin_options! {
    #[derive(Clone, Debug, PartialEq)]
    pub struct InfoProOptions {
        /// reconstruction weight at module 0 (the reference's ixx_1)
        #[schemars(range(min = 0.0))]
        pub recon_first: f64,
        /// reconstruction weight at module K-2 (ixx_2)
        #[schemars(range(min = 0.0))]
        pub recon_last: f64,
        /// local (contrastive or cross-entropy) loss weight at module 0 (ixy_1)
        #[schemars(range(min = 0.0))]
        pub local_first: f64,
        /// local loss weight at module K-2 (ixy_2)
        #[schemars(range(min = 0.0))]
        pub local_last: f64,
        pub local_loss: LocalLoss,
        /// the contrastive loss's temperature
        #[schemars(extend("exclusiveMinimum" = 0.0))]
        pub temperature: f64,
        /// the width of the head's hidden layer and contrastive features
        #[schemars(range(min = 1, max = 65536))]
        pub feature_dim: usize,
    }
}

/// The defaults of the reference's K = 4 setting.
impl Default for InfoProOptions {
    fn default() -> Self {
        InfoProOptions {
            recon_first: 1.0,
            recon_last: 0.0,
            local_first: 0.0,
            local_last: 1.0,
            local_loss: LocalLoss::Contrast,
            temperature: 0.07, // losses.py, auxiliary_nets.py
            feature_dim: 128,
        }
    }
}

impl PluginOptions for InfoProOptions {}

impl InfoProOptions {
    /// Module `i`'s (reconstruction, local loss) weights.
    pub fn weights(&self, ctx: &PluginContext, i: usize) -> (f32, f32) {
        let locals = ctx.split.k().saturating_sub(2);
        let ratio = if locals == 0 {
            0.0
        } else {
            i as f64 / locals as f64
        };
        let at = |first: f64, last: f64| (first + (last - first) * ratio) as f32;
        (
            at(self.recon_first, self.recon_last),
            at(self.local_first, self.local_last),
        )
    }
}

impl IncubationStrategy for InfoPro {
    fn name(&self) -> &str {
        NAME
    }

    fn options(&self) -> OptionSet {
        OptionSet::of::<InfoProOptions>()
    }

    fn uses_meta(&self, _ctx: &PluginContext) -> bool {
        false
    }

    fn depends_on(&self, _ctx: &PluginContext, i: usize) -> Vec<usize> {
        (0..i).collect()
    }

    /// Module i with the `1c2f` head (cross-entropy) or a linear probe (contrastive: the head
    /// is then an extra network of the hybrid).
    fn init_unit(
        &self,
        ctx: &PluginContext,
        i: usize,
        init: &mut Init,
    ) -> Result<Network, PluginError> {
        let v = ctx.vit;
        let o: InfoProOptions = ctx.options()?;
        let f = o.feature_dim;
        Ok(match o.local_loss {
            LocalLoss::Contrast => parts::module_with_aux_head(ctx, i, init, |init| {
                LinearProbe::new(init, v.embed_dim, v.num_classes, v.norm_eps)
            }),
            LocalLoss::CrossEntropy => parts::module_with_aux_head(ctx, i, init, |init| {
                InfoProHead::new(init, v.embed_dim, f, v.num_classes, v.norm_eps)
            }),
        })
    }

    fn hybrid(&self, ctx: &PluginContext, mut inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        let i = inputs.module;
        let o: InfoProOptions = ctx.options()?;
        let (net, trained) = parts::after_finished_modules(&mut inputs.finished, i, inputs.unit)?;
        if i + 1 == ctx.split.k() {
            return Ok(Hybrid::new(net, trained, task_loss()));
        }
        let (recon_w, local_w) = o.weights(ctx, i);
        let v = ctx.vit;
        let decoder = PatchDecoder::new(&mut inputs.init, v.embed_dim, v.patch_dim(), v.norm_eps);
        let decoder = Network {
            parts: vec![Box::new(Named::new("decoder", decoder))],
        };
        // The module's output: the input of its head (or probe), the unit's last part.
        let module_out = Tap::Output(trained.start);
        let hybrid = match o.local_loss {
            LocalLoss::CrossEntropy => {
                let loss = move |x: LossInputs| {
                    let rebuilt = x.extras.run("decoder", x.tap(0));
                    LossTerms::new()
                        .with("recon", recon_w, mse(rebuilt, x.batch.patches.clone()))
                        .with("aux_ce", local_w, x.task())
                };
                Hybrid::new(net, trained, Box::new(loss))
            }
            LocalLoss::Contrast => {
                let (f, temperature) = (o.feature_dim, o.temperature as f32);
                let head = InfoProHead::new(&mut inputs.init, v.embed_dim, f, f, v.norm_eps);
                let head = Network {
                    parts: vec![Box::new(Named::new("head", head))],
                };
                let loss = move |x: LossInputs| {
                    let rebuilt = x.extras.run("decoder", x.tap(0));
                    let features = x.extras.run("head", x.tap(0));
                    LossTerms::new()
                        .with("recon", recon_w, mse(rebuilt, x.batch.patches.clone()))
                        .with(
                            "contrast",
                            local_w,
                            supervised_contrastive(features, &x.batch.labels, temperature),
                        )
                        // the probe's own loss: its stop-gradient keeps it from the module
                        .with("probe", 1.0, x.task())
                };
                Hybrid::new(net, trained, Box::new(loss)).with_extra("head", head, Role::Trained)?
            }
        };
        hybrid
            .with_taps(vec![module_out])
            .with_extra("decoder", decoder, Role::Trained)
    }
}

pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(InfoPro));
}

declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
