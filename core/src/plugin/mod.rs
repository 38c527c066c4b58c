//! The three plugin interfaces the stages go through, and the registry that finds them by
//! name. The paper's method is the reference implementation of each
//! (`plugins/deep-incubation`); a researcher's plugin replaces one of them without touching the
//! stages.

pub mod abi;
pub mod assembly;
pub mod distill;
pub mod error;
pub mod loader;
pub mod meta_design;
pub mod options;
pub mod parts;
pub mod registry;
pub mod strategy;

pub use assembly::AssemblyRule;
pub use error::PluginError;
pub use loader::{LoadError, LoadedLibrary};
pub use meta_design::MetaDesign;
pub use options::{OptionKind, OptionSet, OptionSpec, PluginOptions};
pub use registry::{Kind, Origin, Registrar, Registry, RegistryError};
pub use strategy::{
    task_loss, Hybrid, HybridInputs, IncubationStrategy, LossFn, PartSettings, PartSettingsFn, Tap,
    Target,
};

use crate::config::RunConfig;
use crate::model::VitConfig;
use crate::split::Split;

/// What every plugin call may look at: the target's shape, its split and the whole config.
/// No device: a plugin makes tensors through the [`crate::model::Init`] or the networks it is
/// given, and calls that only plan (`depends_on` for `incubator slurm submit` on a login node)
/// must not make one (on CUDA, a GPU context).
pub struct PluginContext<'a> {
    pub vit: &'a VitConfig,
    pub split: &'a Split,
    pub cfg: &'a RunConfig,
}
