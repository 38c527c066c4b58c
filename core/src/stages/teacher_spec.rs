//! How a strategy names a finished model it learns from: `"e2e"`, `"assemble"`, or a stage of
//! another run directory. Parsed when the run is planned (this run's E2E model as a teacher
//! orders the stages) and when the teacher is loaded.

use crate::events::StageId;
use std::path::PathBuf;

/// Which finished model: a stage of a run directory.
#[derive(Clone, Debug, PartialEq)]
pub struct TeacherSpec {
    /// `None`: this run.
    pub run: Option<PathBuf>,
    pub stage: StageId,
}

impl TeacherSpec {
    /// `"e2e"`, `"assemble"`, `"DIR"` (its E2E model), `"DIR:e2e"` or `"DIR:assemble"`.
    pub fn parse(spec: &str) -> anyhow::Result<TeacherSpec> {
        let stage_of = |s: &str| {
            match s {
            "e2e" => Ok(StageId::E2E),
            "assemble" => Ok(StageId::ASSEMBLE),
            other => anyhow::bail!(
                "teacher {spec:?}: {other:?} is not a finished model; use \"e2e\" or \"assemble\", optionally after a run directory (\"../other-run:e2e\")"
            ),
        }
        };
        if spec.trim().is_empty() {
            anyhow::bail!("the teacher is empty; use \"e2e\", \"assemble\" or \"RUN_DIR:e2e\"");
        }
        if let Ok(stage) = stage_of(spec) {
            return Ok(TeacherSpec { run: None, stage });
        }
        match spec.rsplit_once(':') {
            Some((dir, stage)) if !dir.is_empty() => Ok(TeacherSpec {
                run: Some(dir.into()),
                stage: stage_of(stage)?,
            }),
            _ => Ok(TeacherSpec {
                run: Some(spec.into()),
                stage: StageId::E2E,
            }),
        }
    }
}
