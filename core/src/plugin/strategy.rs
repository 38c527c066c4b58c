//! Incubation strategies: how target module i is trained inside the frozen meta model.

use super::{PluginContext, PluginError};
use crate::device::{Dev, Rows};
use crate::model::{Init, Module, Network};
use crate::train::batch::Batch;
use crate::train::loss::{soft_cross_entropy, Loss};
use dfdx::prelude::OwnedTape;

/// A network in which one module is trained and every other one is frozen.
pub struct Hybrid {
    pub net: Network,
    /// Index of the module being incubated: the only one whose parameters the optimizer sees.
    pub target: usize,
}

pub trait IncubationStrategy: Send + Sync {
    /// The name configs select it by (`plugins.strategy`).
    fn name(&self) -> &str;

    /// Target module `i`, freshly initialised (the reference initialises it randomly).
    fn init_target(
        &self,
        ctx: &PluginContext,
        i: usize,
        init: &mut Init,
    ) -> Result<Module, PluginError>;

    /// The network module `i` is trained in, given the trained meta model.
    fn hybrid(
        &self,
        ctx: &PluginContext,
        meta: Network,
        target: Module,
        i: usize,
    ) -> Result<Hybrid, PluginError>;

    /// The training loss on the hybrid's logits. The reference uses the task loss alone.
    fn loss(&self, logits: Rows<OwnedTape<f32, Dev>>, batch: &Batch) -> Loss {
        soft_cross_entropy(logits, batch.targets.clone())
    }
}
