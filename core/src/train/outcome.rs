//! What a stage's training gives back: its outcome (the numbers its summary records) and the
//! ways it can fail.

use super::evaluate::{f64_or_nan, nan, EvalResult};
use crate::checkpoint;
use crate::events::{EvalSplit, StageId};
use std::path::PathBuf;

/// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN here (a stage
/// that trained no epoch has no final training loss).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOutcome {
    /// Top-1 and top-5 after the last epoch: the stage's result.
    #[serde(deserialize_with = "f64_or_nan")]
    pub top1: f64,
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub top5: f64,
    /// The best top-1 of any epoch's evaluation on `best_split` and that epoch (1-based; 0
    /// when the stage trained no epoch). Reported beside the final one, never chosen by it.
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub best_top1: f64,
    #[serde(default)]
    pub best_epoch: usize,
    /// The split every epoch was evaluated on: the validation split when the run holds one
    /// out, else the test split (summaries written before splits existed: test).
    #[serde(default)]
    pub best_split: EvalSplit,
    /// The final model on the validation split (absent without one). `top1`, `top5` and
    /// `test_loss` are always the test split's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<EvalResult>,
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub wall_s: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_gflop: f64,
    pub epochs: usize,
    /// Optimizer steps trained (0 in summaries written before it was recorded): with
    /// `train_gflop`, what one step costs, so a report can say how many steps of E2E match
    /// the method's compute.
    #[serde(default)]
    pub steps: u64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_train_loss: f64,
    /// See [`TrainJob::depends_on`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<usize>,
    /// The checkpoint file this stage's model was imported from (`incubator import`): the
    /// model itself when `epochs` is 0, else the weights its training started from. Its own
    /// training cost is not in `train_gflop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// The teachers an incubation distilled from and what they cost to train: part of the
    /// method's cost ([`incubator_compare::compare`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teachers: Vec<crate::events::TeacherCost>,
    /// The assembly stage's stacked model before fine-tuning, on the test split (and the
    /// validation split, when the run has one): DGL's and InfoPro's protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacked: Option<StackedEval>,
}

/// A model evaluated on the test split and, when the run holds one out, the validation split.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StackedEval {
    pub test: EvalResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<EvalResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{stage}: the loss became {value} at epoch {epoch}, step {step}. Training stopped; the checkpoint of the last finished epoch is kept, so the stage resumes from there. Lower optim.base_lr, keep optim.clip_grad on, or reduce drop_path")]
    NonFinite {
        stage: StageId,
        value: f32,
        epoch: usize,
        step: u64,
    },
    #[error("{stage}: the training split has {have} images, fewer than one batch of {need} (optim.batch_size x optim.accum_steps, times the ranks training together); lower optim.batch_size or optim.accum_steps, use fewer ranks, or give more images (data.train_limit, data.dataset)")]
    TooLittleData {
        stage: StageId,
        have: usize,
        need: usize,
    },
    #[error("{stage}: rank {rank} of the ranks training together starts from other parameters than rank 0 ({ranks} rank(s) differ{}): every rank must run the same binary with the same config and run directory", param.as_ref().map(|p| format!(", first in {p}")).unwrap_or_default())]
    RanksDisagree {
        stage: StageId,
        /// How many ranks differ from rank 0.
        ranks: u64,
        rank: usize,
        /// The first parameter that differs on this rank (none: this rank agrees).
        param: Option<String>,
    },
    #[error("{stage}: {source}")]
    Loader {
        stage: StageId,
        source: crate::data::folder::LoaderError,
    },
    #[error("{stage}: {source}")]
    Eval {
        stage: StageId,
        source: super::evaluate::EvalError,
    },
    #[error("{stage}: {section}.warmup_epochs = {warmup_epochs} is {warmup_steps} optimizer steps, more than the stage's {total_steps} ({section}.steps): shorten the warmup or raise the budget", section = recipe_section(*stage))]
    WarmupTooLong {
        stage: StageId,
        warmup_epochs: f64,
        warmup_steps: u64,
        total_steps: u64,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{stage}: the plugin's loss is refused: {source}")]
    LossTerms {
        stage: StageId,
        source: super::loss::TermsError,
    },
    #[error("{stage}: the plugin's optimizer settings are refused: {source}")]
    PartSettings {
        stage: StageId,
        source: super::job::SettingsError,
    },
    #[error("cannot resume from {path}: {why}; delete it to restart the stage from scratch")]
    Resume { path: PathBuf, why: String },
    #[error("cannot write the resumable state ({source}). The previous state file is kept as it was, so nothing finished before it is lost: free space (or fix the file system) and run the same command again to resume from it")]
    StateWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{stage} stopped by {signal} at epoch {} step {step}/{steps_per_epoch}; {}. Run the same command again to resume", epoch + 1, match state { Some(p) => format!("its state is saved in {}", p.display()), None => "this job keeps no state".to_string() })]
    Interrupted {
        stage: StageId,
        signal: &'static str,
        epoch: usize,
        step: u64,
        steps_per_epoch: u64,
        state: Option<PathBuf>,
    },
}

/// The config section of a stage's recipe.
fn recipe_section(stage: StageId) -> &'static str {
    use crate::events::StageKind;
    match stage.stage {
        StageKind::Meta => "meta",
        StageKind::Incubate => "incubate",
        StageKind::Assemble => "finetune",
        StageKind::E2e => "e2e",
    }
}
