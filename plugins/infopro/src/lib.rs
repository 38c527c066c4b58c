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

use incubator_core::anyhow;
use incubator_core::model::aux_heads::PatchDecoder;
use incubator_core::model::baseline_heads::{InfoProHead, LinearProbe};
use incubator_core::model::{Init, Named, Network, Role};
use incubator_core::plugin::{
    parts, task_loss, Hybrid, HybridInputs, IncubationStrategy, OptionSpec, PluginContext,
    Registrar, Tap,
};
use incubator_core::train::contrastive::{supervised_contrastive, INFOPRO_TEMPERATURE};
use incubator_core::train::loss::{mse, LossInputs, LossTerms};
use std::sync::Arc;

pub const NAME: &str = "infopro";

pub struct InfoPro;

/// The local loss of the modules before the last.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LocalLoss {
    /// The supervised contrastive loss on the head's features (the reference's default).
    Contrast { temperature: f32 },
    /// The cross-entropy of the head's logits.
    CrossEntropy,
}

fn local_loss(ctx: &PluginContext) -> anyhow::Result<LocalLoss> {
    match parts::option_str(ctx, "local_loss", "contrast")?.as_str() {
        "contrast" => {
            let t = parts::option_f64(ctx, "temperature", INFOPRO_TEMPERATURE as f64)?;
            if !(t > 0.0 && t.is_finite()) {
                anyhow::bail!("plugins.options.temperature = {t} must be a positive number");
            }
            Ok(LocalLoss::Contrast {
                temperature: t as f32,
            })
        }
        "cross-entropy" => Ok(LocalLoss::CrossEntropy),
        other => anyhow::bail!(
            "plugins.options.local_loss = {other:?}: use \"contrast\" (the reference's) or \"cross-entropy\""
        ),
    }
}

fn feature_dim(ctx: &PluginContext) -> anyhow::Result<usize> {
    let d = parts::option_int(ctx, "feature_dim", 128)?;
    if !(1..=65536).contains(&d) {
        anyhow::bail!("plugins.options.feature_dim = {d} must be a whole number from 1 to 65536");
    }
    Ok(d as usize)
}

/// Module `i`'s (reconstruction, local loss) weights.
pub fn weights(ctx: &PluginContext, i: usize) -> anyhow::Result<(f32, f32)> {
    let opt = |k: &str, d: f64| parts::option_f64(ctx, k, d);
    let (r1, r2) = (opt("recon_first", 1.0)?, opt("recon_last", 0.0)?);
    let (c1, c2) = (opt("local_first", 0.0)?, opt("local_last", 1.0)?);
    if [r1, r2, c1, c2].iter().any(|w| *w < 0.0 || !w.is_finite()) {
        anyhow::bail!(
            "plugins.options recon_first, recon_last, local_first, local_last must be finite and >= 0"
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
                "local_first",
                0.0,
                "local (contrastive or cross-entropy) loss weight at module 0 (ixy_1)",
            ),
            OptionSpec::float("local_last", 1.0, "local loss weight at module K-2 (ixy_2)"),
            OptionSpec::text(
                "local_loss",
                "contrast",
                "\"contrast\" (supervised contrastive, the reference's) or \"cross-entropy\"",
            ),
            OptionSpec::float(
                "temperature",
                INFOPRO_TEMPERATURE as f64,
                "the contrastive loss's temperature",
            ),
            OptionSpec::int(
                "feature_dim",
                128,
                "the width of the head's hidden layer and contrastive features",
            ),
        ]
    }

    fn uses_meta(&self, _ctx: &PluginContext) -> bool {
        false
    }

    fn depends_on(&self, _ctx: &PluginContext, i: usize) -> Vec<usize> {
        (0..i).collect()
    }

    /// Module i with the `1c2f` head (cross-entropy) or a linear probe (contrastive: the head
    /// is then an extra network of the hybrid).
    fn init_unit(&self, ctx: &PluginContext, i: usize, init: &mut Init) -> anyhow::Result<Network> {
        let v = ctx.vit;
        let f = feature_dim(ctx)?;
        Ok(match local_loss(ctx)? {
            LocalLoss::Contrast { .. } => parts::module_with_aux_head(ctx, i, init, |init| {
                LinearProbe::new(init, v.embed_dim, v.num_classes, v.norm_eps)
            }),
            LocalLoss::CrossEntropy => parts::module_with_aux_head(ctx, i, init, |init| {
                InfoProHead::new(init, v.embed_dim, f, v.num_classes, v.norm_eps)
            }),
        })
    }

    fn hybrid(&self, ctx: &PluginContext, mut inputs: HybridInputs) -> anyhow::Result<Hybrid> {
        let i = inputs.module;
        let (net, trained) = parts::after_finished_modules(&mut inputs.finished, i, inputs.unit)?;
        if i + 1 == ctx.split.k() {
            return Ok(Hybrid::new(net, trained, task_loss()));
        }
        let (recon_w, local_w) = weights(ctx, i)?;
        let v = ctx.vit;
        let decoder = PatchDecoder::new(&mut inputs.init, v.embed_dim, v.patch_dim(), v.norm_eps);
        let decoder = Network {
            parts: vec![Box::new(Named::new("decoder", decoder))],
        };
        // The module's output: the input of its head (or probe), the unit's last part.
        let module_out = Tap::Output(trained.start);
        let hybrid = match local_loss(ctx)? {
            LocalLoss::CrossEntropy => {
                let loss = move |x: LossInputs| {
                    let rebuilt = x.extras.run("decoder", x.tap(0));
                    LossTerms::new()
                        .with("recon", recon_w, mse(rebuilt, x.batch.patches.clone()))
                        .with("aux_ce", local_w, x.task())
                };
                Hybrid::new(net, trained, Box::new(loss))
            }
            LocalLoss::Contrast { temperature } => {
                let head = InfoProHead::new(
                    &mut inputs.init,
                    v.embed_dim,
                    feature_dim(ctx)?,
                    feature_dim(ctx)?,
                    v.norm_eps,
                );
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

incubator_core::declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
