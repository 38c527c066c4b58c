//! Meta-model designs: what the small network the modules are incubated in looks like.

use super::PluginContext;
use crate::model::{Init, Network};

type Result<T> = std::result::Result<T, super::PluginError>;

pub trait MetaDesign: Send + Sync {
    /// The name configs select it by (`plugins.meta_design`).
    fn name(&self) -> &str;

    /// Its `[plugins.options]`: `OptionSet::of::<MyOptions>()` (see [`super::PluginOptions`]).
    /// A run refuses any other key, and any value the options refuse, before anything trains.
    fn options(&self) -> super::OptionSet {
        super::OptionSet::none()
    }

    /// A randomly initialised meta model, trained end to end by the meta stage. Incubation
    /// strategies decide how its parts line up with the K target modules (the reference: one
    /// part per module, the first owning the stem and the last the head).
    fn build(&self, ctx: &PluginContext, init: &mut Init) -> Result<Network>;
}
