//! Assembly rules: how trained modules become the target model that is fine-tuned.

use super::PluginContext;
use crate::model::Network;

pub trait AssemblyRule: Send + Sync {
    /// The name configs select it by (`plugins.assembly`).
    fn name(&self) -> &str;

    /// The `[plugins.options]` keys it reads; a run refuses any other key, or a value of
    /// another type, before training.
    fn options(&self) -> Vec<super::options::OptionSpec> {
        Vec::new()
    }

    /// The model to fine-tune, from the K incubated units (in module order, each as the
    /// strategy's `init_unit` made it); the trained meta model is offered for rules that reuse
    /// parts of it.
    fn assemble(
        &self,
        ctx: &PluginContext,
        units: Vec<Network>,
        meta: Network,
    ) -> anyhow::Result<Network>;
}
