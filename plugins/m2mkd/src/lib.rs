//! m2mKD-style incubation (Lo et al., arXiv 2402.16918, adapted to Deep Incubation): target
//! module i is trained inside the frozen meta model as the paper does, but its loss mixes the
//! task loss with distillation from the whole meta model's predictions:
//! `(1 - alpha) * CE + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))`.
//! Options: `[plugins.options] alpha = 0.5, temperature = 1.0`.

use incubator_core::anyhow;
use incubator_core::device::Rows;
use incubator_core::model::{Init, Mode, Network, Traced};
use incubator_core::plugin::{
    parts, Hybrid, HybridInputs, IncubationStrategy, PluginContext, Registrar,
};
use incubator_core::train::batch::Batch;
use incubator_core::train::loss::{kl_distillation, soft_cross_entropy};
use std::sync::Arc;

pub const NAME: &str = "m2mkd";

pub struct M2mKd;

impl IncubationStrategy for M2mKd {
    fn name(&self) -> &str {
        NAME
    }

    fn init_unit(&self, ctx: &PluginContext, i: usize, init: &mut Init) -> anyhow::Result<Network> {
        Ok(parts::target_module(ctx, i, init))
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> anyhow::Result<Hybrid> {
        let alpha = parts::option_f64(ctx, "alpha", 0.5)? as f32;
        let temperature = parts::option_f64(ctx, "temperature", 1.0)? as f32;
        if !(0.0..=1.0).contains(&alpha) || temperature <= 0.0 {
            anyhow::bail!("needs 0 <= alpha <= 1 and temperature > 0 (plugins.options), got {alpha} and {temperature}");
        }
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        // The teacher is a second copy of the trained meta model, run without gradients.
        let teacher = (inputs.load_meta)()?;
        let (net, trained) = parts::splice(inputs.meta, inputs.module, inputs.unit)?;
        let loss = move |logits: Rows<Traced>, batch: &Batch| {
            let teacher_logits = teacher.forward(batch.patches.clone(), 0.0, &mut Mode::eval());
            let task = soft_cross_entropy(logits.retaped(), batch.targets.clone());
            let kd = kl_distillation(logits, teacher_logits, temperature);
            task * (1.0 - alpha) + kd * alpha
        };
        Ok(Hybrid {
            net,
            trained,
            loss: Box::new(loss),
        })
    }
}

pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(M2mKd));
}

incubator_core::declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
