//! A strategy that panics while building its hybrid (for every module, or only for module
//! `[plugins.options] fail_module`; the others incubate as the paper does): the stage must
//! fail with the panic's message and leave the run directory consistent.

use incubator_core::anyhow;
use incubator_core::plugin::{
    parts, task_loss, Hybrid, HybridInputs, IncubationStrategy, OptionSpec, PluginContext,
    Registrar,
};
use std::sync::Arc;

pub struct Panicking;

impl IncubationStrategy for Panicking {
    fn name(&self) -> &str {
        "panicking"
    }

    fn options(&self) -> Vec<OptionSpec> {
        vec![OptionSpec::int(
            "fail_module",
            -1,
            "the only module that panics (-1: every module)",
        )]
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> anyhow::Result<Hybrid> {
        let only = ctx
            .cfg
            .plugins
            .options
            .get("fail_module")
            .and_then(|v| v.as_integer());
        if only
            .filter(|m| *m >= 0)
            .is_none_or(|m| m as usize == inputs.module)
        {
            panic!("the panicking plugin refuses module {}", inputs.module)
        }
        let (net, trained) = parts::splice(inputs.meta, inputs.module, inputs.unit)?;
        Ok(Hybrid::new(net, trained, task_loss()))
    }
}

incubator_core::declare_plugin!("panicking", |r: &mut Registrar| {
    r.add_strategy(Arc::new(Panicking));
    Ok(())
});
