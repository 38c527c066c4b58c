//! What one stage asks of the training loop: the data, the recipe, the trainable set, the loss
//! and where its resumable state goes.

use super::loss::{LossInputs, LossTerms, Progress};
use crate::config::{RunConfig, StageRecipe};
use crate::data::Data;
use crate::events::StageId;
use crate::model::VitConfig;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The loss a stage trains on: named terms from the logits, the tapped activations, the
/// batch and the extra networks.
pub type LossFn<'a> = dyn Fn(LossInputs) -> LossTerms + 'a;

/// The optimizer settings of the trainable parameters at a position (per-part learning-rate
/// scales, weight decay, freezing), by parameter name.
pub type SettingsFn<'a> =
    dyn Fn(&Progress) -> Result<super::optimizer::Settings, SettingsError> + 'a;

/// Per-part settings that name what the stage does not train.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("parts {parts:?} are not within the trained parts {trained:?}")]
    PartsOutside {
        parts: std::ops::Range<usize>,
        trained: std::ops::Range<usize>,
    },
    #[error("{name:?} is not a trained extra network (trained: {trained:?})")]
    UnknownExtra { name: String, trained: Vec<String> },
}

/// The task loss alone (meta model, fine-tuning, the E2E baseline).
pub fn task_loss(inputs: LossInputs) -> LossTerms {
    LossTerms::task(inputs.task())
}

pub struct TrainJob<'a> {
    pub stage: StageId,
    pub cfg: &'a RunConfig,
    pub vit: &'a VitConfig,
    pub recipe: StageRecipe,
    pub data: &'a Data,
    /// Modules before this one are frozen and run untraced.
    pub first_traced: usize,
    /// Parameter names the optimizer updates; everything else stays bit-identical.
    pub trainable: BTreeSet<String>,
    /// Positions of the network whose activations the loss receives
    /// ([`Network::forward_tapped`]).
    pub taps: Vec<usize>,
    pub loss: &'a LossFn<'a>,
    /// Per-step optimizer settings; `None`: every trainable parameter alike.
    pub settings: Option<&'a SettingsFn<'a>>,
    /// Where the per-epoch resumable state goes; `None` trains without checkpoints.
    pub state_path: Option<PathBuf>,
    /// The stages this one waited for, by the run's plan: recorded in the start event (and the
    /// modules among them in the outcome), so that a report or dashboard knows which stages
    /// could overlap.
    pub needs: Vec<StageId>,
}
