//! What one finished run of a sweep measured, read from its stage summaries (no data or model
//! is loaded, so a report works anywhere the run directories are).

use incubator_compare::{compare, Comparison};
use incubator_core::events::{EvalSplit, StageId};
use incubator_core::run_dir::RunDir;
use incubator_core::stages::report::{result, stacked_of};
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
}

/// The run's result, or `None` while its assembled model is missing.
pub fn read(run: &Path, point: &str, seed: u64) -> anyhow::Result<Option<RunResult>> {
    let dir = RunDir {
        root: run.to_path_buf(),
    };
    let Some(ft) = dir.summary(StageId::ASSEMBLE)? else {
        return Ok(None);
    };
    let meta = dir.summary(StageId::META)?;
    let mut incubations = Vec::new();
    for i in 0.. {
        match dir.summary(StageId::incubate(i))? {
            Some(s) => incubations.push(s),
            None => break,
        }
    }
    let depends_on: Vec<Vec<usize>> = incubations
        .iter()
        .map(|s| s.outcome.depends_on.clone())
        .collect();
    let e2e = dir.summary(StageId::E2E)?;
    Ok(Some(RunResult {
        point: point.into(),
        seed,
        comparison: compare(
            meta.as_ref().map(result).as_ref(),
            &incubations.iter().map(result).collect::<Vec<_>>(),
            &depends_on,
            &result(&ft),
            e2e.as_ref().map(result).as_ref(),
            &incubations
                .iter()
                .flat_map(|s| s.outcome.teachers.clone())
                .collect::<Vec<_>>(),
        )
        .with_stacked(stacked_of(&ft)),
        e2e_from: None,
        per_epoch_split: ft.outcome.best_split,
    }))
}
