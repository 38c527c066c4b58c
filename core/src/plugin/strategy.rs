//! Incubation strategies: how target module i is trained inside the frozen meta model.

use super::PluginContext;
use crate::config::StageRecipe;
use crate::device::Rows;
use crate::model::{Init, Network, Traced};
use crate::train::batch::Batch;
use crate::train::loss::{soft_cross_entropy, Loss};
use std::collections::BTreeMap;
use std::ops::Range;

/// A training loss on a hybrid's logits for a batch.
#[cfg(not(feature = "cuda"))]
pub type LossFn = dyn Fn(Rows<Traced>, &Batch) -> Loss + Send + Sync;
/// (CUDA handles cannot cross threads: see [`crate::device::MaybeSync`].)
#[cfg(feature = "cuda")]
pub type LossFn = dyn Fn(Rows<Traced>, &Batch) -> Loss;

/// The task loss alone (soft-target cross-entropy), the reference's incubation loss.
pub fn task_loss() -> Box<LossFn> {
    Box::new(|logits, batch: &Batch| soft_cross_entropy(logits, batch.targets.clone()))
}

/// The network module i is trained in, and how.
pub struct Hybrid {
    pub net: Network,
    /// The parts of `net` that are trained: module i's unit (see
    /// [`IncubationStrategy::init_unit`]), in order. Nothing else reaches the optimizer; parts
    /// before it run untraced.
    pub trained: Range<usize>,
    pub loss: Box<LossFn>,
}

/// What the engine hands a strategy to build module i's hybrid from.
pub struct HybridInputs<'a> {
    pub module: usize,
    /// The trained meta model.
    pub meta: Network,
    /// Module i's unit, freshly initialised by [`IncubationStrategy::init_unit`].
    pub unit: Network,
    /// The trained units of the modules [`IncubationStrategy::depends_on`] named.
    pub finished: BTreeMap<usize, Network>,
    /// Another copy of the trained meta model (e.g. a distillation teacher).
    pub load_meta: &'a dyn Fn() -> anyhow::Result<Network>,
}

pub trait IncubationStrategy: Send + Sync {
    /// The name configs select it by (`plugins.strategy`).
    fn name(&self) -> &str;

    /// Modules whose incubation must finish before module `i` starts. The reference trains
    /// all modules independently: none.
    fn depends_on(&self, _ctx: &PluginContext, _i: usize) -> Vec<usize> {
        Vec::new()
    }

    /// What is trained for module `i`, freshly initialised: the target module (the reference
    /// initialises it randomly), plus anything trained with it (e.g. stitch layers). Its
    /// weights are saved as `incubate-i/module.safetensors` and handed to the assembly rule.
    fn init_unit(&self, ctx: &PluginContext, i: usize, init: &mut Init) -> anyhow::Result<Network>;

    /// The network module `i`'s unit is trained in, its trained parts and the loss.
    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> anyhow::Result<Hybrid>;

    /// Epochs, warmup and drop-path of module `i`'s incubation, from the config's `[incubate]`.
    fn recipe(&self, _ctx: &PluginContext, _i: usize, base: StageRecipe) -> StageRecipe {
        base
    }
}
