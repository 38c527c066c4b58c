//! Assembly rules: how trained modules become the target model that is fine-tuned.

use super::{PluginContext, PluginError};
use crate::model::{Module, Network};

pub trait AssemblyRule: Send + Sync {
    /// The name configs select it by (`plugins.assembly`).
    fn name(&self) -> &str;

    /// The target built from the incubated `modules` (in module order); the meta model is
    /// offered for rules that reuse parts of it.
    fn assemble(
        &self,
        ctx: &PluginContext,
        modules: Vec<Module>,
        meta: Network,
    ) -> Result<Network, PluginError>;
}
