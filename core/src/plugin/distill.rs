//! Hinton's distillation as strategies use it (meta-kd from the meta model, m2mKD from a
//! teacher hybrid): the options that set it and the two loss terms it makes.

use super::{parts, OptionSpec, PluginContext};
use crate::device::Rows;
use crate::train::loss::{kl_distillation, LossInputs, LossTerms};
use dfdx::prelude::NoneTape;

/// `(1 - alpha) * CE + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distillation {
    pub alpha: f32,
    pub temperature: f32,
}

impl Distillation {
    /// `alpha` and `temperature`, with the reference's defaults (0.5 and 1).
    pub fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::float(
                "alpha",
                0.5,
                "weight of the distillation term (0 to 1); the task loss gets 1 - alpha",
            ),
            OptionSpec::float(
                "temperature",
                1.0,
                "softmax temperature of the distillation (> 0)",
            ),
        ]
    }

    /// The settings of `[plugins.options]`, checked.
    pub fn from_options(ctx: &PluginContext) -> anyhow::Result<Distillation> {
        let alpha = parts::option_f64(ctx, "alpha", 0.5)? as f32;
        let temperature = parts::option_f64(ctx, "temperature", 1.0)? as f32;
        if !(0.0..=1.0).contains(&alpha) || !(temperature > 0.0) {
            anyhow::bail!("needs 0 <= alpha <= 1 and temperature > 0 (plugins.options), got {alpha} and {temperature}");
        }
        Ok(Distillation { alpha, temperature })
    }

    /// The terms `task` and `kd` of the student's logits against `teacher`'s.
    pub fn terms(&self, x: &LossInputs, teacher: Rows<NoneTape>) -> LossTerms {
        LossTerms::new()
            .with("task", 1.0 - self.alpha, x.task())
            .with(
                "kd",
                self.alpha,
                kl_distillation(x.logits(), teacher, self.temperature),
            )
    }
}
