//! Incubation strategies: how target module i is trained inside the frozen meta model.

use super::{parts, PluginContext};
use crate::config::StageRecipe;
use crate::model::{Extras, Init, Network, Role};
use crate::train::loss::{LossInputs, LossTerms, Progress};
pub use crate::train::optimizer::ParamSettings as PartSettings;
use std::collections::BTreeMap;
use std::ops::Range;

type Result<T> = std::result::Result<T, super::PluginError>;

/// A training loss: named terms from the hybrid's logits, its tapped activations, the batch
/// and its extra networks ([`LossInputs`]).
#[cfg(not(feature = "cuda"))]
pub type LossFn = dyn Fn(LossInputs) -> LossTerms + Send + Sync;
/// (CUDA handles cannot cross threads: see [`crate::device::MaybeSync`].)
#[cfg(feature = "cuda")]
pub type LossFn = dyn Fn(LossInputs) -> LossTerms;

/// The task loss alone (soft-target cross-entropy), the reference's incubation loss.
pub fn task_loss() -> Box<LossFn> {
    Box::new(crate::train::trainer::task_loss)
}

/// A point of a hybrid whose activation the loss receives: the input or the output of one of
/// its parts (the output of part p is the input of part p + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    Input(usize),
    Output(usize),
}

impl Tap {
    /// The position in [`Network::forward_tapped`]'s numbering.
    pub fn position(self) -> usize {
        match self {
            Tap::Input(p) => p,
            Tap::Output(p) => p + 1,
        }
    }
}

/// Which trained parameters a [`PartSettings`] applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// The parts of the hybrid in this range (within [`Hybrid::trained`]).
    Parts(Range<usize>),
    /// A [`Role::Trained`] extra network, by name.
    Extra(String),
}

/// The optimizer settings of parts of the hybrid at a position of the stage: learning-rate
/// scales (a new module faster than its glue), weight decay, freezing (unfreeze a part after N
/// epochs: `frozen: p.epoch < n`). Called before every optimizer step; it must depend on the
/// position only (not on earlier calls), so that a resumed stage trains as an uninterrupted
/// one. Parameters no target names keep the defaults.
#[cfg(not(feature = "cuda"))]
pub type PartSettingsFn = dyn Fn(&Progress) -> Vec<(Target, PartSettings)> + Send + Sync;
#[cfg(feature = "cuda")]
pub type PartSettingsFn = dyn Fn(&Progress) -> Vec<(Target, PartSettings)>;

/// The network module i is trained in, and how.
pub struct Hybrid {
    pub net: Network,
    /// The parts of `net` that are trained: module i's unit (see
    /// [`IncubationStrategy::init_unit`]), in order. With the [`Role::Trained`] extras, nothing
    /// else reaches the optimizer; parts before it run untraced.
    pub trained: Range<usize>,
    /// Points whose activations the loss receives, in this order ([`LossInputs::tap`]).
    pub taps: Vec<Tap>,
    /// Networks the loss runs beside the path: auxiliary heads trained with the unit (saved
    /// as `incubate-i/extras.safetensors`, never assembled), frozen references and teachers.
    pub extras: Extras,
    pub loss: Box<LossFn>,
    /// Per-part optimizer settings over the stage ([`PartSettingsFn`]); `None`: all alike.
    pub part_settings: Option<Box<PartSettingsFn>>,
}

impl Hybrid {
    /// `net` with the parts `trained` trained on `loss`; no taps, no extras.
    pub fn new(net: Network, trained: Range<usize>, loss: Box<LossFn>) -> Hybrid {
        Hybrid {
            net,
            trained,
            taps: Vec::new(),
            extras: Extras::none(),
            loss,
            part_settings: None,
        }
    }

    /// Sets the per-part optimizer settings ([`PartSettingsFn`]).
    pub fn with_part_settings(mut self, f: Box<PartSettingsFn>) -> Hybrid {
        self.part_settings = Some(f);
        self
    }

    /// Also hands the loss the activations at `taps`.
    pub fn with_taps(mut self, taps: Vec<Tap>) -> Hybrid {
        self.taps = taps;
        self
    }

    /// Adds an extra network the loss runs under `name`.
    pub fn with_extra(mut self, name: &str, net: Network, role: Role) -> Result<Hybrid> {
        self.extras
            .add(name, net, role)
            .map_err(|e| super::PluginError::Refused(e.to_string()))?;
        Ok(self)
    }
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
    pub load_meta: &'a dyn Fn() -> Result<Network>,
    /// A finished model as a frozen network of its modules, one part each: `"e2e"` or
    /// `"assemble"` of this run, or `"DIR"` / `"DIR:e2e"` / `"DIR:assemble"` of another run
    /// directory (relative to this run's directory). Name it in
    /// [`IncubationStrategy::teachers`] so that it is trained first.
    pub load_teacher: &'a dyn Fn(&str) -> Result<Network>,
    /// Seeded initialisation for extra networks (auxiliary heads): the same weights in every
    /// process and on every resume.
    pub init: Init<'a>,
}

pub trait IncubationStrategy: Send + Sync {
    /// The name configs select it by (`plugins.strategy`).
    fn name(&self) -> &str;

    /// Its `[plugins.options]`: `OptionSet::of::<MyOptions>()` (see [`super::PluginOptions`]).
    /// A run refuses any other key, and any value the options refuse, before anything trains.
    fn options(&self) -> super::OptionSet {
        super::OptionSet::none()
    }

    /// Modules whose incubation must finish before module `i` starts. The reference trains
    /// all modules independently: none.
    fn depends_on(&self, _ctx: &PluginContext, _i: usize) -> Vec<usize> {
        Vec::new()
    }

    /// What is trained for module `i`, freshly initialised: the target module (the reference
    /// initialises it randomly), plus anything trained with it (e.g. stitch layers). Its
    /// weights are saved as `incubate-i/module.safetensors` and handed to the assembly rule.
    fn init_unit(&self, ctx: &PluginContext, i: usize, init: &mut Init) -> Result<Network> {
        Ok(parts::target_module(ctx, i, init))
    }

    /// Whether the hybrids use the meta model. Module-wise baselines that train each module on
    /// the frozen modules before it (DGL, InfoPro) do not: the meta stage then trains nothing
    /// and costs nothing, and [`HybridInputs::meta`] is an empty network.
    fn uses_meta(&self, _ctx: &PluginContext) -> bool {
        true
    }

    /// The finished models [`HybridInputs::load_teacher`] will load (its specs): a teacher of
    /// this run (`"e2e"`) is then trained before the incubations, in one process as on a
    /// cluster.
    fn teachers(&self, _ctx: &PluginContext) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The network module `i`'s unit is trained in, its trained parts and the loss.
    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> Result<Hybrid>;

    /// Epochs, warmup and drop-path of module `i`'s incubation, from the config's `[incubate]`.
    fn recipe(&self, _ctx: &PluginContext, _i: usize, base: StageRecipe) -> StageRecipe {
        base
    }
}
