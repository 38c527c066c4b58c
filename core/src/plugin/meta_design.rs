//! Meta-model designs: what the small network the modules are incubated in looks like.

use super::{PluginContext, PluginError};
use crate::model::{Init, Network};

pub trait MetaDesign: Send + Sync {
    /// The name configs select it by (`plugins.meta_design`).
    fn name(&self) -> &str;

    /// A randomly initialised meta model with one module per target module (K modules, the
    /// first owning the stem and the last the head), trained end to end by the meta stage.
    fn build(&self, ctx: &PluginContext, init: &mut Init) -> Result<Network, PluginError>;
}
