//! Hinton's distillation as strategies use it (meta-kd from the meta model, m2mKD from a
//! teacher hybrid): the options that set it and the two loss terms it makes.

use super::PluginOptions;
use crate::device::Rows;
use crate::train::loss::{kl_distillation, LossInputs, LossTerms};
use dfdx::prelude::NoneTape;

crate::plugin_options! {
    /// `(1 - alpha) * CE + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))`,
    /// with the reference's defaults (alpha 0.5, T 1). Strategies that distil take these
    /// options as they are (`OptionSet::of::<Distillation>()`) or flatten them into their own.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Distillation {
        /// weight of the distillation term; the task loss gets 1 - alpha
        #[schemars(range(min = 0.0, max = 1.0))]
        pub alpha: f32,
        /// softmax temperature of the distillation
        #[schemars(extend("exclusiveMinimum" = 0.0))]
        pub temperature: f32,
    }
}

impl Default for Distillation {
    fn default() -> Self {
        Distillation {
            alpha: 0.5,
            temperature: 1.0,
        }
    }
}

impl PluginOptions for Distillation {}

impl Distillation {
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
