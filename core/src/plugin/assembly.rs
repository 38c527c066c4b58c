//! Assembly rules: how trained modules become the target model that is fine-tuned.

use super::PluginContext;
use crate::model::Network;

type Result<T> = std::result::Result<T, super::PluginError>;

pub trait AssemblyRule: Send + Sync {
    /// The name configs select it by (`plugins.assembly`).
    fn name(&self) -> &str;

    /// Its `[plugins.options]`: `OptionSet::of::<MyOptions>()` (see [`super::PluginOptions`]).
    /// A run refuses any other key, and any value the options refuse, before anything trains.
    fn options(&self) -> super::OptionSet {
        super::OptionSet::none()
    }

    /// The model to fine-tune, from the K incubated units (in module order, each as the
    /// strategy's `init_unit` made it); the trained meta model is offered for rules that reuse
    /// parts of it.
    fn assemble(&self, ctx: &PluginContext, units: Vec<Network>, meta: Network) -> Result<Network>;
}
