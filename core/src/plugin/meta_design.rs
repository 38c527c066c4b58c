//! Meta-model designs: what the small network the modules are incubated in looks like.

use super::PluginContext;
use crate::model::{Init, Network};

pub trait MetaDesign: Send + Sync {
    /// The name configs select it by (`plugins.meta_design`).
    fn name(&self) -> &str;

    /// The `[plugins.options]` keys it reads; a run refuses any other key, or a value of
    /// another type, before training.
    fn options(&self) -> Vec<super::options::OptionSpec> {
        Vec::new()
    }

    /// A randomly initialised meta model, trained end to end by the meta stage. Incubation
    /// strategies decide how its parts line up with the K target modules (the reference: one
    /// part per module, the first owning the stem and the last the head).
    fn build(&self, ctx: &PluginContext, init: &mut Init) -> anyhow::Result<Network>;
}
