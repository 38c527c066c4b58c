//! InfoPro (Wang et al., ICLR 2021), local learning with information-propagation losses, as an
//! incubation strategy: each module but the last is trained on the frozen output of the
//! modules before it with
//! `recon_weight * reconstruction + ce_weight * CE(auxiliary classifier)`,
//! where a decoder (an extra network trained with the module, dropped afterwards) rebuilds the
//! network's input patches from the module's output tokens. As in the reference, the weights
//! interpolate linearly from (`recon_first`, `ce_first`) at module 0 to (`recon_last`,
//! `ce_last`) at module K-2; the last module trains with the real head on plain CE. No meta
//! model; assembly stacks the modules (decoders and classifiers are left out).
//!
//! Options (`[plugins.options]`, defaults from the reference's K = 4 setting): `recon_first =
//! 1.0`, `recon_last = 0.0`, `ce_first = 0.0`, `ce_last = 1.0`, `aux_hidden = 1`.
//! Differences from the reference: the decoder is LayerNorm + Linear per patch token and its
//! loss is the mean squared error against the normalised input patches (the reference
//! upsamples conv features and takes a BCE against the de-normalised image); modules train
//! one after another rather than all at once.

use incubator_core::anyhow;
use incubator_core::model::aux_heads::PatchDecoder;
use incubator_core::model::{Init, Named, Network, Role};
use incubator_core::plugin::{
    parts, task_loss, Hybrid, HybridInputs, IncubationStrategy, OptionSpec, PluginContext,
    Registrar, Tap,
};
use incubator_core::train::loss::{mse, LossInputs, LossTerms};
use std::sync::Arc;

pub const NAME: &str = "infopro";

pub struct InfoPro;

/// Module `i`'s (reconstruction, classification) weights.
pub fn weights(ctx: &PluginContext, i: usize) -> anyhow::Result<(f32, f32)> {
    let opt = |k: &str, d: f64| parts::option_f64(ctx, k, d);
    let (r1, r2) = (opt("recon_first", 1.0)?, opt("recon_last", 0.0)?);
    let (c1, c2) = (opt("ce_first", 0.0)?, opt("ce_last", 1.0)?);
    if [r1, r2, c1, c2].iter().any(|w| *w < 0.0 || !w.is_finite()) {
        anyhow::bail!(
            "plugins.options recon_first, recon_last, ce_first, ce_last must be finite and >= 0"
        );
    }
    let locals = ctx.split.k().saturating_sub(2);
    let ratio = if locals == 0 {
        0.0
    } else {
        i as f64 / locals as f64
    };
    Ok((
        (r1 + (r2 - r1) * ratio) as f32,
        (c1 + (c2 - c1) * ratio) as f32,
    ))
}

impl IncubationStrategy for InfoPro {
    fn name(&self) -> &str {
        NAME
    }

    fn options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::float(
                "recon_first",
                1.0,
                "reconstruction weight at module 0 (the reference's ixx_1)",
            ),
            OptionSpec::float(
                "recon_last",
                0.0,
                "reconstruction weight at module K-2 (ixx_2)",
            ),
            OptionSpec::float(
                "ce_first",
                0.0,
                "auxiliary cross-entropy weight at module 0 (ixy_1)",
            ),
            OptionSpec::float(
                "ce_last",
                1.0,
                "auxiliary cross-entropy weight at module K-2 (ixy_2)",
            ),
            parts::aux_hidden_option(),
        ]
    }

    fn uses_meta(&self, _ctx: &PluginContext) -> bool {
        false
    }

    fn depends_on(&self, _ctx: &PluginContext, i: usize) -> Vec<usize> {
        (0..i).collect()
    }

    fn init_unit(&self, ctx: &PluginContext, i: usize, init: &mut Init) -> anyhow::Result<Network> {
        parts::module_with_aux_classifier(ctx, i, init)
    }

    fn hybrid(&self, ctx: &PluginContext, mut inputs: HybridInputs) -> anyhow::Result<Hybrid> {
        let i = inputs.module;
        let (net, trained) = parts::after_finished_modules(&mut inputs.finished, i, inputs.unit)?;
        if i + 1 == ctx.split.k() {
            return Ok(Hybrid::new(net, trained, task_loss()));
        }
        let (recon_w, ce_w) = weights(ctx, i)?;
        let v = ctx.vit;
        let decoder = PatchDecoder::new(&mut inputs.init, v.embed_dim, v.patch_dim(), v.norm_eps);
        let decoder = Network {
            parts: vec![Box::new(Named::new("decoder", decoder))],
        };
        let loss = move |x: LossInputs| {
            let rebuilt = x.extras.run("decoder", x.tap(0));
            LossTerms::new()
                .with("recon", recon_w, mse(rebuilt, x.batch.patches.clone()))
                .with("aux_ce", ce_w, x.task())
        };
        // The module's output: the input of its auxiliary classifier, the unit's last part.
        let module_out = Tap::Output(trained.start);
        Hybrid::new(net, trained, Box::new(loss))
            .with_taps(vec![module_out])
            .with_extra("decoder", decoder, Role::Trained)
    }
}

pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(InfoPro));
}

incubator_core::declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
