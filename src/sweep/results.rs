//! What one finished run of a sweep measured, read from its stage summaries (no data or model
//! is loaded, so a report works anywhere the run directories are).

use incubator_core::events::StageId;
use incubator_core::run_dir::{RunDir, StageSummary};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunResult {
    pub point: String,
    pub seed: u64,
    pub assembled_top1: f64,
    pub assembled_top5: f64,
    /// Meta + every incubation + fine-tune.
    pub method_gflop: f64,
    /// The same stages one after another (one machine).
    pub method_wall_s: f64,
    pub e2e: Option<E2eResult>,
    /// The configuration whose run of this seed trained `e2e`, when not this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_from: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct E2eResult {
    pub top1: f64,
    pub top5: f64,
    pub gflop: f64,
    pub wall_s: f64,
}

/// The run's result, or `None` while its assembled model is missing.
pub fn read(run: &Path, point: &str, seed: u64) -> anyhow::Result<Option<RunResult>> {
    let dir = RunDir {
        root: run.to_path_buf(),
    };
    let Some(ft) = dir.summary(StageId::ASSEMBLE)? else {
        return Ok(None);
    };
    let mut method: Vec<StageSummary> = vec![ft.clone()];
    method.extend(dir.summary(StageId::META)?);
    for i in 0.. {
        match dir.summary(StageId::incubate(i))? {
            Some(s) => method.push(s),
            None => break,
        }
    }
    let e2e = dir.summary(StageId::E2E)?.map(|s| E2eResult {
        top1: s.outcome.top1,
        top5: s.outcome.top5,
        gflop: s.outcome.train_gflop,
        wall_s: s.outcome.wall_s,
    });
    Ok(Some(RunResult {
        point: point.into(),
        seed,
        assembled_top1: ft.outcome.top1,
        assembled_top5: ft.outcome.top5,
        method_gflop: method.iter().map(|s| s.outcome.train_gflop).sum(),
        method_wall_s: method.iter().map(|s| s.outcome.wall_s).sum(),
        e2e,
        e2e_from: None,
    }))
}
