//! An incubation strategy to start from (`incubator plugin new NAME` copies this crate).
//!
//! `template`: like the paper's incubation, but target module i starts from its meta layer,
//! copied into each of its blocks (and the meta stem / head for the first / last module),
//! instead of from random weights. Select it with `[plugins] strategy = "template"`.

use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "template";

pub struct Template;

impl IncubationStrategy for Template {
    fn name(&self) -> &str {
        NAME
    }

    /// The network module i trains in: the trained meta model with part i replaced by the
    /// unit. Only the parts in `trained` reach the optimizer.
    fn hybrid(&self, ctx: &PluginContext, mut inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        let i = inputs.module;
        let copied = parts::copy_matching(
            inputs.unit.parts[0].as_mut(),
            inputs.meta.parts[i].as_ref(),
            parts::first_block,
        );
        if copied == 0 {
            refuse!("module {i} shares no parameter with meta layer {i}: is the meta model as wide as the target?");
        }
        let (net, trained) = parts::splice(inputs.meta, i, inputs.unit)?;
        Ok(Hybrid::new(net, trained, task_loss()))
    }
}

/// Everything this crate provides; the engine calls it when it loads the library.
pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(Template));
}

declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
