//! Logit distillation from the meta model: target module i is trained inside the frozen meta
//! model as the paper does, and its loss mixes the task loss with distillation from the
//! whole trained meta model's predictions:
//! `(1 - alpha) * CE + alpha * T^2 * KL(softmax(meta / T) || softmax(hybrid / T))`.
//! Options: `[plugins.options] alpha = 0.5, temperature = 1.0`.
//!
//! (Module-to-module distillation from a stronger teacher, as m2mKD does it, is the `m2mkd`
//! plugin.)

use incubator_core::sdk::loss::LossInputs;
use incubator_core::sdk::net::{Network, Role};
use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "meta-kd";

pub struct MetaKd;

impl IncubationStrategy for MetaKd {
    fn name(&self) -> &str {
        NAME
    }

    fn options(&self) -> OptionSet {
        OptionSet::of::<Distillation>()
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        let kd: Distillation = ctx.options()?;
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        // The teacher: a second copy of the trained meta model, frozen, run without gradients.
        let teacher: Network = (inputs.load_meta)()?;
        let (net, trained) = parts::splice(inputs.meta, inputs.module, inputs.unit)?;
        let loss = move |x: LossInputs| {
            let teacher_logits = x.extras.predict("meta", x.batch.patches.clone());
            kd.terms(&x, teacher_logits)
        };
        Hybrid::new(net, trained, Box::new(loss)).with_extra("meta", teacher, Role::Frozen)
    }
}

pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(MetaKd));
}

declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
