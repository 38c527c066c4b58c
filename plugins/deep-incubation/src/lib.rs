//! The paper's method (Ni et al., "Deep Model Assembling", arXiv 2212.04129) as the reference
//! implementation of each plugin interface:
//! - meta design: the target's width with one block per module;
//! - incubation: target module i, randomly initialised, replaces meta module i; task loss only;
//! - assembly: the incubated modules stacked in order, nothing added.

use incubator_core::model::{Init, Module, Network};
use incubator_core::plugin::{
    AssemblyRule, Hybrid, IncubationStrategy, MetaDesign, Origin, PluginContext, PluginError,
    Registry,
};
use std::sync::Arc;

pub const NAME: &str = "deep-incubation";

pub struct OneBlockMeta;

impl MetaDesign for OneBlockMeta {
    fn name(&self) -> &str {
        NAME
    }

    fn build(&self, ctx: &PluginContext, init: &mut Init) -> Result<Network, PluginError> {
        Ok(Network::new(init, ctx.vit, &vec![1; ctx.split.k()]))
    }
}

pub struct ModuleIncubation;

impl IncubationStrategy for ModuleIncubation {
    fn name(&self) -> &str {
        NAME
    }

    fn init_target(
        &self,
        ctx: &PluginContext,
        i: usize,
        init: &mut Init,
    ) -> Result<Module, PluginError> {
        let depths = &ctx.split.divided_depths;
        Ok(Module::new(init, ctx.vit, i, depths.len(), depths[i]))
    }

    fn hybrid(
        &self,
        _ctx: &PluginContext,
        mut meta: Network,
        target: Module,
        i: usize,
    ) -> Result<Hybrid, PluginError> {
        if i >= meta.modules.len() {
            return Err(PluginError {
                plugin: NAME.into(),
                message: format!(
                    "module {i} does not exist in a meta model of {} modules",
                    meta.modules.len()
                ),
            });
        }
        meta.modules[i] = target;
        Ok(Hybrid {
            net: meta,
            target: i,
        })
    }
}

pub struct Stacking;

impl AssemblyRule for Stacking {
    fn name(&self) -> &str {
        NAME
    }

    fn assemble(
        &self,
        _ctx: &PluginContext,
        modules: Vec<Module>,
        _meta: Network,
    ) -> Result<Network, PluginError> {
        Ok(Network { modules })
    }
}

/// Registers the three reference plugins as built-ins.
pub fn register(registry: &mut Registry) {
    let version = env!("CARGO_PKG_VERSION");
    registry.add_meta_design(Arc::new(OneBlockMeta), Origin::BuiltIn, version);
    registry.add_strategy(Arc::new(ModuleIncubation), Origin::BuiltIn, version);
    registry.add_assembly(Arc::new(Stacking), Origin::BuiltIn, version);
}
