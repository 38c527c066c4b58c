//! What one finished run of a sweep measured, read from its stage summaries (no data or model
//! is loaded, so a report works anywhere the run directories are).

use incubator_compare::Comparison;
use incubator_core::events::EvalSplit;
use incubator_core::run_dir::RunDir;
use incubator_core::stages::report::FinishedStages;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunResult {
    pub point: String,
    pub seed: u64,
    /// Assembled vs E2E; the E2E side may come from the baseline configuration's run.
    #[serde(flatten)]
    pub comparison: Comparison,
    /// The configuration whose run of this seed trained `e2e`, when not this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_from: Option<String>,
    /// The split its stages were evaluated on after every epoch (`val` when the run holds
    /// out a validation split); every top-1 and top-5 here is the test split's.
    pub per_epoch_split: EvalSplit,
    /// The last epoch's mean training loss (on the training augmentation: mixed targets when
    /// mixup is on) of the fine-tune and of E2E: with the test top-1 beside it, whether a
    /// side fits its training images better and generalises worse.
    pub assembled_train_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_train_loss: Option<f64>,
}

/// The run's result, or `None` while its assembled model is missing.
pub fn read(run: &Path, point: &str, seed: u64) -> anyhow::Result<Option<RunResult>> {
    let dir = RunDir::at(run);
    Ok(FinishedStages::read(&dir)?.map(|stages| RunResult {
        point: point.into(),
        seed,
        comparison: stages.comparison(),
        e2e_from: None,
        per_epoch_split: stages.assemble.outcome.best_split,
        assembled_train_loss: stages.assemble.outcome.final_train_loss,
        e2e_train_loss: stages.e2e.as_ref().map(|e| e.outcome.final_train_loss),
    }))
}
