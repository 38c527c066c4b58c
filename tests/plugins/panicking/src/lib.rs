//! A strategy that panics while building its hybrid: the stage must fail with the panic's
//! message and leave the run directory consistent (no summary, the stage can be re-run).

use incubator_core::anyhow;
use incubator_core::model::{Init, Network};
use incubator_core::plugin::{Hybrid, HybridInputs, IncubationStrategy, PluginContext, Registrar};
use std::sync::Arc;

pub struct Panicking;

impl IncubationStrategy for Panicking {
    fn name(&self) -> &str {
        "panicking"
    }

    fn init_unit(&self, ctx: &PluginContext, i: usize, init: &mut Init) -> anyhow::Result<Network> {
        let d = &ctx.split.divided_depths;
        Ok(Network::from_parts(vec![
            incubator_core::model::Module::new(init, ctx.vit, i, d.len(), d[i]),
        ]))
    }

    fn hybrid(&self, _ctx: &PluginContext, inputs: HybridInputs) -> anyhow::Result<Hybrid> {
        panic!("the panicking plugin refuses module {}", inputs.module)
    }
}

incubator_core::declare_plugin!("panicking", |r: &mut Registrar| {
    r.add_strategy(Arc::new(Panicking));
    Ok(())
});
