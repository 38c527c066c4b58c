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

use incubator_core::anyhow;
use incubator_core::model::{Network, Part, Role};
use incubator_core::plugin::distill::Distillation;
use incubator_core::plugin::{
    parts, Hybrid, HybridInputs, IncubationStrategy, OptionSpec, PluginContext, Registrar, Tap,
};
use incubator_core::train::loss::LossInputs;
use std::sync::Arc;

pub const NAME: &str = "m2mkd";

pub struct M2mKd;

fn teacher_spec(ctx: &PluginContext) -> anyhow::Result<String> {
    parts::option_str(ctx, "teacher", "e2e")
}

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

    fn options(&self) -> Vec<OptionSpec> {
        let teacher = OptionSpec::text(
            "teacher",
            "e2e",
            "the finished model whose modules teach: \"e2e\" (this run's, trained first) or \"RUN_DIR:e2e\" / \"RUN_DIR:assemble\" (relative to this run's directory)",
        );
        std::iter::once(teacher)
            .chain(Distillation::options())
            .collect()
    }

    fn teachers(&self, ctx: &PluginContext) -> anyhow::Result<Vec<String>> {
        Ok(vec![teacher_spec(ctx)?])
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> anyhow::Result<Hybrid> {
        let kd = Distillation::from_options(ctx)?;
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        let (i, k) = (inputs.module, ctx.split.k());
        let spec = teacher_spec(ctx)?;
        let mut teacher = (inputs.load_teacher)(&spec)?;
        if teacher.parts.len() != k {
            anyhow::bail!(
                "teacher {spec:?} has {} modules, this run's split has {k}: teacher module i must take student module i's place",
                teacher.parts.len()
            );
        }
        let (tw, mw) = (
            width(teacher.parts[i].as_ref()),
            width(inputs.meta.parts[i].as_ref()),
        );
        if tw != mw {
            anyhow::bail!("teacher module {i} works at width {tw:?}, the meta model at {mw:?}: they must match (a stitched m2mKD is not implemented)");
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

incubator_core::declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
