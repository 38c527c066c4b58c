//! A strategy that panics while building its hybrid (for every module, or only for module
//! `[plugins.options] fail_module`; the others incubate as the paper does): the stage must
//! fail with the panic's message and leave the run directory consistent.

use incubator_core::sdk::*;
use std::sync::Arc;

plugin_options! {
    pub struct PanickingOptions {
        /// the only module that panics (-1: every module)
        pub fail_module: i64,
    }
}

impl Default for PanickingOptions {
    fn default() -> Self {
        PanickingOptions { fail_module: -1 }
    }
}

impl PluginOptions for PanickingOptions {}

pub struct Panicking;

impl IncubationStrategy for Panicking {
    fn name(&self) -> &str {
        "panicking"
    }

    fn options(&self) -> OptionSet {
        OptionSet::of::<PanickingOptions>()
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        let only = ctx.options::<PanickingOptions>()?.fail_module;
        if only < 0 || only as usize == inputs.module {
            panic!("the panicking plugin refuses module {}", inputs.module)
        }
        let (net, trained) = parts::splice(inputs.meta, inputs.module, inputs.unit)?;
        Ok(Hybrid::new(net, trained, task_loss()))
    }
}

declare_plugin!("panicking", |r: &mut Registrar| {
    r.add_strategy(Arc::new(Panicking));
    Ok(())
});
