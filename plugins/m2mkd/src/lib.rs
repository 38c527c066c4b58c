//! m2mKD (Lo et al., arXiv 2402.16918): module-to-module knowledge distillation. For student
//! module i, teacher module i (from a finished model, e.g. the E2E baseline) is placed into the
//! frozen meta model to form the teacher hybrid; the student hybrid is the meta model with the
//! student module in the same place. Both share the meta prefix, computed once (the student
//! hybrid's input to module i is tapped and fed to the teacher's suffix). The loss, on the two
//! hybrids' logits:
//! `(1 - alpha) * CE(student) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))`.
//!
//! Options: `[plugins.options] teacher = "e2e"` (this run's baseline, trained first;
//! `"RUN_DIR:e2e"` / `"RUN_DIR:assemble"` for another run's model), `alpha = 0.5`,
//! `temperature = 1.0` (the reference's defaults).

use incubator_core::sdk::loss::LossInputs;
use incubator_core::sdk::net::{Network, Part, Role};
use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "m2mkd";

plugin_options! {
    pub struct M2mKdOptions {
        /// the finished model whose modules teach: "e2e" (this run's, trained first) or
        /// "RUN_DIR:e2e" / "RUN_DIR:assemble" (relative to this run's directory)
        pub teacher: String,
        #[serde(flatten)]
        pub distill: Distillation,
    }
}

impl Default for M2mKdOptions {
    fn default() -> Self {
        M2mKdOptions {
            teacher: "e2e".into(),
            distill: Distillation::default(),
        }
    }
}

impl PluginOptions for M2mKdOptions {}

pub struct M2mKd;

/// The token width a part works at (its first block's first norm), if it has blocks.
fn width(part: &dyn Part) -> Option<usize> {
    let mut params = Vec::new();
    part.params_at(0, &mut params);
    params
        .iter()
        .find(|(n, _)| n.ends_with("norm1.weight"))
        .map(|(_, p)| p.numel())
}

impl IncubationStrategy for M2mKd {
    fn name(&self) -> &str {
        NAME
    }

    fn options(&self) -> OptionSet {
        OptionSet::of::<M2mKdOptions>()
    }

    fn teachers(&self, ctx: &PluginContext) -> Result<Vec<String>, PluginError> {
        Ok(vec![ctx.options::<M2mKdOptions>()?.teacher])
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        let M2mKdOptions {
            teacher: spec,
            distill: kd,
        } = ctx.options()?;
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        let (i, k) = (inputs.module, ctx.split.k());
        let mut teacher = (inputs.load_teacher)(&spec)?;
        if teacher.parts.len() != k {
            refuse!(
                "teacher {spec:?} has {} modules, this run's split has {k}: teacher module i must take student module i's place",
                teacher.parts.len()
            );
        }
        let (tw, mw) = (
            width(teacher.parts[i].as_ref()),
            width(inputs.meta.parts[i].as_ref()),
        );
        if tw != mw {
            refuse!("teacher module {i} works at width {tw:?}, the meta model at {mw:?}: they must match (a stitched m2mKD is not implemented)");
        }
        // The teacher hybrid after the shared prefix: teacher module i, then the meta suffix.
        let mut meta_copy = (inputs.load_meta)()?;
        let suffix_parts = meta_copy.split_off(i + 1..k).parts;
        let mut teacher_suffix = teacher.split_off(i..i + 1);
        teacher_suffix.parts.extend(suffix_parts);

        let (net, trained) = parts::splice(inputs.meta, i, inputs.unit)?;
        let loss = move |x: LossInputs| {
            let teacher_logits = x.extras.predict("teacher", x.tap_plain(0));
            kd.terms(&x, teacher_logits)
        };
        Hybrid::new(net, trained, Box::new(loss))
            .with_taps(vec![Tap::Input(i)])
            .with_extra(
                "teacher",
                Network {
                    parts: teacher_suffix.parts,
                },
                Role::Frozen,
            )
    }
}

pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(M2mKd));
}

declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
