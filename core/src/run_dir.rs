//! The run directory: the only channel between stage processes (which may run on different
//! machines of a cluster, sharing a file system).
//!
//! ```text
//! RUN/config.toml                      resolved configuration (every stage checks it)
//! RUN/events/<stage>.jsonl             event stream, one file per stage process
//! RUN/tensorboard/<stage>/             TensorBoard event files
//! RUN/stages/<stage>/state.safetensors resumable state, rewritten after every epoch
//! RUN/stages/<stage>/<result>.safetensors  final weights (model / module / assembled)
//! RUN/stages/<stage>/lock             held by the one process running the stage
//! RUN/stages/<stage>/summary.json      written last: its presence means "stage finished"
//! RUN/report.md, RUN/report.json       comparison table of `incubator run` / `incubator report`
//! ```

use crate::checkpoint::write_atomic;
use crate::config::RunConfig;
use crate::events::StageId;
use crate::train::TrainOutcome;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

/// What a finished stage leaves behind; the comparison table is built from these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub stage: StageId,
    #[serde(flatten)]
    pub outcome: TrainOutcome,
    pub host: String,
    pub finished_at: f64,
}

impl RunDir {
    /// Opens `root`, creating it with `cfg` if new. An existing run keeps its config: passing a
    /// different one is an error, since its checkpoints were made with the stored one.
    pub fn open(root: &Path, cfg: Option<&RunConfig>) -> anyhow::Result<(RunDir, RunConfig)> {
        let run = RunDir {
            root: root.to_path_buf(),
        };
        let path = run.config_path();
        if path.exists() {
            let stored = RunConfig::load_stored(&path)?;
            stored.validate().map_err(|e| {
                anyhow::anyhow!(
                    "{e}\n(in {}, the configuration this run directory was created with; fix it there or start a new --run-dir)",
                    path.display()
                )
            })?;
            if let Some(cfg) = cfg {
                if *cfg != stored {
                    anyhow::bail!(
                        "run directory {} was created with a different configuration ({}); \
                         use a new --run-dir, or drop --config to continue with the stored one",
                        root.display(),
                        first_difference(&stored, cfg)
                    );
                }
            }
            return Ok((run, stored));
        }
        let cfg = cfg.cloned().unwrap_or_default();
        cfg.validate()?;
        std::fs::create_dir_all(root)
            .map_err(|e| anyhow::anyhow!("cannot create run directory {}: {e}", root.display()))?;
        write_atomic(&path, cfg.to_toml().as_bytes())?;
        Ok((run, cfg))
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn stage_dir(&self, id: StageId) -> PathBuf {
        self.root.join("stages").join(id.slug())
    }
    pub fn state_path(&self, id: StageId) -> PathBuf {
        self.stage_dir(id).join("state.safetensors")
    }
    pub fn lock_path(&self, id: StageId) -> PathBuf {
        self.stage_dir(id).join("lock")
    }
    pub fn summary_path(&self, id: StageId) -> PathBuf {
        self.stage_dir(id).join("summary.json")
    }

    pub fn summary(&self, id: StageId) -> anyhow::Result<Option<StageSummary>> {
        let path = self.summary_path(id);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is corrupt ({e}); delete it to re-run stage {id}",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn write_summary(&self, s: &StageSummary) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(s)?;
        write_atomic(&self.summary_path(s.stage), text.as_bytes())?;
        Ok(())
    }
}

/// The first top-level setting that differs, for the mismatch message.
fn first_difference(a: &RunConfig, b: &RunConfig) -> String {
    let (ta, tb): (toml::Table, toml::Table) = (
        toml::from_str(&a.to_toml()).unwrap_or_default(),
        toml::from_str(&b.to_toml()).unwrap_or_default(),
    );
    for (k, va) in &ta {
        if let (toml::Value::Table(sa), Some(toml::Value::Table(sb))) = (va, tb.get(k)) {
            for (k2, v2) in sa {
                if sb.get(k2) != Some(v2) {
                    return format!(
                        "{k}.{k2} is {v2} there, {} here",
                        sb.get(k2).map(|v| v.to_string()).unwrap_or("unset".into())
                    );
                }
            }
        } else if tb.get(k) != Some(va) {
            return format!(
                "{k} is {va} there, {} here",
                tb.get(k).map(|v| v.to_string()).unwrap_or("unset".into())
            );
        }
    }
    "the settings differ".into()
}
