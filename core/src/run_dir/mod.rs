//! The run directory: the only channel between stage processes (which may run on different
//! machines of a cluster, sharing a file system).
//!
//! ```text
//! RUN/config.toml                      resolved configuration (every stage checks it)
//! RUN/lock                             held shared by every command that has the run open
//! RUN/events/<stage>.jsonl             event stream, one file per stage process
//! RUN/tensorboard/<stage>/             TensorBoard event files
//! RUN/stages/<stage>/state.safetensors resumable state, rewritten after every epoch
//! RUN/stages/<stage>/<result>.safetensors  final weights (model / module / assembled)
//! RUN/stages/<stage>/lock             held by the one process running the stage
//! RUN/stages/<stage>/summary.json      written last: its presence means "stage finished"
//! RUN/report.md, RUN/report.json       comparison table of `incubator run` / `incubator report`
//! ```

mod artifacts;
pub use artifacts::IMPORTED_FROM;

use crate::checkpoint::write_atomic;
use crate::config::diff::{differences, same_training};
use crate::config::RunConfig;
use crate::events::StageId;
use crate::train::TrainOutcome;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the engine writes at the top of a run directory (besides `export/`, where exports
/// go): a user's output (an export's `--out`) must never land on or in one of these.
pub const OWN_ENTRIES: [&str; 10] = [
    "config.toml",
    "lock",
    "classes.json",
    "events",
    "tensorboard",
    "stages",
    "slurm",
    "eval",
    "report.md",
    "report.json",
];

/// Where a run on an image folder records its classes (in the run directory).
pub const CLASSES_FILE: &str = "classes.json";

/// A run directory, opened with the configuration its stages train under (`stamp`) or as a
/// bare view of its files (`RunDir::at`, for readers that only collect numbers).
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
    stamp: Option<ConfigStamp>,
    /// `RUN/lock`, held shared while this process has the run open (see [`Opening::commit`]).
    hold: Option<std::sync::Arc<std::fs::File>>,
}

/// The configuration a run trains under, as each stage's summary records it.
#[derive(Clone, Debug)]
struct ConfigStamp {
    sha256: String,
    toml: String,
}

impl ConfigStamp {
    fn of(cfg: &RunConfig) -> ConfigStamp {
        use sha2::Digest;
        let toml = cfg.to_toml();
        ConfigStamp {
            sha256: hex::encode(sha2::Sha256::digest(toml.as_bytes())),
            toml,
        }
    }
}

/// What a finished stage leaves behind; the comparison table is built from these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub stage: StageId,
    #[serde(flatten)]
    pub outcome: TrainOutcome,
    pub host: String,
    pub finished_at: f64,
    /// SHA-256 of the resolved configuration the stage trained under (`config_toml`). Absent
    /// in runs made before it was recorded, which are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_toml: Option<String>,
}

/// Which commands may start a run in a directory that has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// `run`, `meta`, `e2e`, `import`, `slurm submit`: a new run, with the given config or the
    /// defaults.
    Start,
    /// Everything else (`eval`, `export`, `incubate`, `assemble`, `slurm status`, ...): a
    /// mistyped path must not leave a run behind.
    Existing,
}

/// What opening a run directory will do, decided before anything is written, so that the
/// caller can check a configuration it is about to record (its plugins, its data) first.
pub enum Opening {
    Stored(RunDir, RunConfig),
    New(RunDir, RunConfig),
    /// A run in which no stage saved anything, taking a corrected configuration.
    Corrected {
        run: RunDir,
        cfg: RunConfig,
        stored: Box<RunConfig>,
        changed: Vec<String>,
    },
}

impl Opening {
    pub fn cfg(&self) -> &RunConfig {
        match self {
            Opening::Stored(_, cfg) | Opening::New(_, cfg) | Opening::Corrected { cfg, .. } => cfg,
        }
    }

    /// Whether the configuration is about to be recorded (a new or a corrected run).
    pub fn records(&self) -> bool {
        !matches!(self, Opening::Stored(..))
    }

    /// Records the configuration (nothing for a stored run) and holds the run open (a shared
    /// lock on `RUN/lock` for as long as the [`RunDir`] lives).
    ///
    /// Creating a run cannot replace one that another command created at the same moment:
    /// the config file appears by a link that fails if the name exists, and the loser is held
    /// to the winner's config. A correction takes the lock exclusively, so it is refused while
    /// any other command has the run open (one that created it and is still loading its data,
    /// say); every other opening holds the lock shared before it reads the config.
    pub fn commit(self) -> anyhow::Result<(RunDir, RunConfig)> {
        match self {
            Opening::Stored(mut run, cfg) => {
                let hold = run.hold_open()?;
                let stored = RunConfig::load_stored(&run.config_path())?;
                if stored != cfg {
                    anyhow::bail!(
                        "the configuration of {} changed while it was being opened (another command corrected it: {}); run this again",
                        run.root.display(),
                        differences(&cfg, &stored).join("; ")
                    );
                }
                run.hold = hold;
                // every command on the run finds a mismatch before it trains anything
                run.check_finished_stages()?;
                Ok((run, cfg))
            }
            Opening::New(mut run, cfg) => {
                create_run_root(&run.root)?;
                run.hold = run.hold_open()?;
                let path = run.config_path();
                let created = crate::checkpoint::write_new_atomic(&path, cfg.to_toml().as_bytes())?;
                if created {
                    return Ok((run, cfg));
                }
                // another command created this run between our look and our write
                let stored = RunConfig::load_stored(&path)?;
                if stored != cfg {
                    anyhow::bail!(
                        "run directory {} was just created by another command with a different configuration ({}); \
                         use a new --run-dir, or drop --config to continue with the stored one",
                        run.root.display(),
                        differences(&stored, &cfg).join("; ")
                    );
                }
                Ok((run, cfg))
            }
            Opening::Corrected {
                mut run,
                cfg,
                stored,
                changed,
            } => {
                let Some(hold) = run.hold_open()? else {
                    anyhow::bail!(
                        "cannot correct the configuration of {}: its directory is not writable",
                        run.root.display()
                    );
                };
                match hold.try_lock() {
                    Ok(()) => {}
                    Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                        "run directory {} was created with a different configuration ({}) and another command has it open \
                         (a stage starting or training under it); its configuration can be corrected only when none has: \
                         wait for it, or use a new --run-dir",
                        run.root.display(),
                        changed.join("; ")
                    ),
                    Err(std::fs::TryLockError::Error(e)) => {
                        anyhow::bail!("cannot lock {}: {e}", run.lock_file().display())
                    }
                }
                // alone now: nothing may have been saved or changed since the plan
                let now = RunConfig::load_stored(&run.config_path())?;
                if now != *stored || !run.saved_files().is_empty() {
                    anyhow::bail!(
                        "run directory {} changed while it was being opened; run this again",
                        run.root.display()
                    );
                }
                let path = run.config_path();
                crate::checkpoint::write_atomic(&path, cfg.to_toml().as_bytes())?;
                // derived from the old data.path; listed again from the new one
                let _ = std::fs::remove_file(run.root.join(CLASSES_FILE));
                hold.lock_shared().map_err(|e| {
                    anyhow::anyhow!("cannot lock {}: {e}", run.lock_file().display())
                })?;
                run.hold = Some(hold);
                eprintln!(
                    "run {}: no stage had saved anything under its configuration, so it takes the one given ({})",
                    run.root.display(),
                    changed.join("; ")
                );
                Ok((run, cfg))
            }
        }
    }
}

fn create_run_root(root: &Path) -> anyhow::Result<()> {
    if root.exists() && !root.is_dir() {
        anyhow::bail!(
            "run directory {} is a file, not a directory: give --run-dir a directory path",
            root.display()
        );
    }
    std::fs::create_dir_all(root)
        .map_err(|e| anyhow::anyhow!("cannot create run directory {}: {e}", root.display()))
}

impl RunDir {
    /// The files of the run at `root`, without its configuration: summaries are read
    /// unchecked. For readers that collect numbers (sweeps, tests).
    pub fn at(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
            stamp: None,
            hold: None,
        }
    }

    /// Opens `root` (see [`RunDir::plan`]) and records its configuration if new or corrected.
    pub fn open(
        root: &Path,
        cfg: Option<&RunConfig>,
        mode: OpenMode,
    ) -> anyhow::Result<(RunDir, RunConfig)> {
        RunDir::plan(root, cfg, mode)?.commit()
    }

    /// What opening `root` with `cfg` means. An existing run keeps its config: a different one
    /// is refused, since its checkpoints were made with the stored one, unless no stage has
    /// saved anything yet (a run whose first stage failed on its data, a NaN or a batch size),
    /// which takes the corrected config. A directory without a run is one only in
    /// [`OpenMode::Start`].
    pub fn plan(root: &Path, cfg: Option<&RunConfig>, mode: OpenMode) -> anyhow::Result<Opening> {
        let path = root.join("config.toml");
        let exists = std::fs::symlink_metadata(&path).is_ok();
        if !exists {
            if mode == OpenMode::Existing {
                anyhow::bail!(
                    "no run at {} (it has no config.toml): check the path; a run is started by `incubator run`, `meta` or `e2e` with -c CONFIG -d {}",
                    root.display(),
                    root.display()
                );
            }
            let cfg = cfg.cloned().unwrap_or_default();
            if root.exists() && !root.is_dir() {
                create_run_root(root)?;
            }
            let run = RunDir::stamped(root, &cfg);
            if let Some(saved) = run.saved_files().first() {
                anyhow::bail!(
                    "{} has no config.toml but its stages have saved results ({}): restore the configuration they trained under \
                     (each finished stage's summary.json records it as config_toml), or start a new --run-dir",
                    root.display(),
                    saved.display()
                );
            }
            cfg.validate()?;
            return Ok(Opening::New(run, cfg));
        }
        let stored = RunConfig::load_stored(&path)?;
        stored.validate().map_err(|e| {
            anyhow::anyhow!(
                "{e}\n(in {}, the configuration this run directory was created with; fix it there or start a new --run-dir)",
                path.display()
            )
        })?;
        let Some(cfg) = cfg.filter(|c| **c != stored) else {
            return Ok(Opening::Stored(RunDir::stamped(root, &stored), stored));
        };
        let changed = differences(&stored, cfg);
        let run = RunDir::stamped(root, cfg);
        let saved = run.saved_files();
        if saved.is_empty() {
            cfg.validate()?;
            return Ok(Opening::Corrected {
                run,
                cfg: cfg.clone(),
                stored: Box::new(stored),
                changed,
            });
        }
        anyhow::bail!(
            "run directory {} was created with a different configuration ({}) and its stages have saved results under it ({}); \
             use a new --run-dir, or drop --config to continue with the stored one",
            root.display(),
            changed.join("; "),
            saved[0].display()
        )
    }

    fn stamped(root: &Path, cfg: &RunConfig) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
            stamp: Some(ConfigStamp::of(cfg)),
            hold: None,
        }
    }

    /// Who else has this run open: `None` when nobody does (or there is no run here);
    /// otherwise the stages being trained and by whom, for a caller that should wait rather
    /// than start a second writer.
    pub fn in_use(&self) -> Option<String> {
        let file = std::fs::File::open(self.lock_file()).ok()?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                return None;
            }
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(_)) => return None,
        }
        let mut stages: Vec<String> = std::fs::read_dir(self.root.join("stages"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let holder = crate::stage_lock::holder_at(&e.path().join("lock"))?;
                Some(format!(
                    "stage {} in {holder}",
                    e.file_name().to_string_lossy()
                ))
            })
            .collect();
        stages.sort();
        Some(if stages.is_empty() {
            "another process".into()
        } else {
            stages.join(", ")
        })
    }

    fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// `RUN/lock`, locked shared (blocking only while a correction rewrites the config).
    /// `None` in a run this user cannot write (one read on a read-only mount): nobody can
    /// correct it through this mount either.
    fn hold_open(&self) -> anyhow::Result<Option<std::sync::Arc<std::fs::File>>> {
        let path = self.lock_file();
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                return Ok(None)
            }
            Err(e) => anyhow::bail!("cannot open {}: {e}", path.display()),
        };
        file.lock_shared()
            .map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", path.display()))?;
        Ok(Some(std::sync::Arc::new(file)))
    }

    /// Files a stage saved (states, weights, summaries), not counting locks and temporaries.
    fn saved_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(stages) = std::fs::read_dir(self.root.join("stages")) else {
            return out;
        };
        for stage in stages.flatten() {
            let Ok(files) = std::fs::read_dir(stage.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let name = name.to_string_lossy();
                if name != "lock" && !name.starts_with('.') {
                    out.push(f.path());
                }
            }
        }
        out.sort();
        out
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

    /// Stage `id`'s summary, if it finished. A summary recorded under another configuration
    /// than the run's is refused: its results are not this run's (a config.toml deleted and
    /// remade, say).
    pub fn summary(&self, id: StageId) -> anyhow::Result<Option<StageSummary>> {
        let path = self.summary_path(id);
        let summary: StageSummary = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is corrupt ({e}); delete it to re-run stage {id}",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        if let (Some(stamp), Some(hash)) = (&self.stamp, &summary.config_sha256) {
            if *hash != stamp.sha256 {
                self.check_trained_under(&summary, stamp, &path)?;
            }
        }
        Ok(Some(summary))
    }

    /// Every finished stage's summary, checked against the run's configuration.
    fn check_finished_stages(&self) -> anyhow::Result<()> {
        let Ok(stages) = std::fs::read_dir(self.root.join("stages")) else {
            return Ok(());
        };
        let mut dirs: Vec<PathBuf> = stages.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let path = dir.join("summary.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            // an unreadable summary is named when its stage is read
            if let Ok(s) = serde_json::from_str::<StageSummary>(&text) {
                self.summary(s.stage)?;
            }
        }
        Ok(())
    }

    /// A hash that differs may still be the same configuration, written by an engine that
    /// knew fewer keys: the recorded text decides.
    fn check_trained_under(
        &self,
        summary: &StageSummary,
        stamp: &ConfigStamp,
        path: &Path,
    ) -> anyhow::Result<()> {
        let ours = RunConfig::from_toml(&stamp.toml, "the run's config")?;
        let theirs = summary
            .config_toml
            .as_deref()
            .map(|t| RunConfig::from_toml(t, &path.display().to_string()));
        let changed = match theirs {
            Some(Ok(theirs)) if same_training(&theirs, &ours) => return Ok(()),
            Some(Ok(theirs)) => differences(&theirs, &ours).join("; "),
            _ => "its recorded configuration cannot be read".into(),
        };
        anyhow::bail!(
            "stage {} of {} finished under another configuration than {} ({changed}): its results are not this run's. \
             Restore the configuration it trained under (the config_toml of {}), or start a new --run-dir",
            summary.stage,
            self.root.display(),
            self.config_path().display(),
            path.display()
        )
    }

    /// Writes `s` stamped with the configuration the run trains under.
    pub fn write_summary(&self, s: &StageSummary) -> anyhow::Result<()> {
        let mut s = s.clone();
        if let Some(stamp) = &self.stamp {
            s.config_sha256 = Some(stamp.sha256.clone());
            s.config_toml = Some(stamp.toml.clone());
        }
        let text = serde_json::to_string_pretty(&s)?;
        let path = self.summary_path(s.stage);
        Ok(write_atomic(&path, text.as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_many_threads_creating_one_run_only_those_with_the_recorded_config_succeed() {
        let tmp = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let root = tmp.path().join(format!("run{round}"));
            let barrier = std::sync::Barrier::new(8);
            // (each opening is kept until all are done: an open run cannot be corrected)
            let results: Vec<(u64, anyhow::Result<(RunDir, RunConfig)>)> =
                std::thread::scope(|s| {
                    let handles: Vec<_> = (0..8u64)
                        .map(|i| {
                            let (root, barrier) = (&root, &barrier);
                            s.spawn(move || {
                                // two configurations among eight creators
                                let cfg = RunConfig {
                                    seed: i % 2,
                                    ..RunConfig::default()
                                };
                                barrier.wait();
                                (i % 2, RunDir::open(root, Some(&cfg), OpenMode::Start))
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
            let stored = RunConfig::load_stored(&root.join("config.toml")).unwrap();
            for (seed, opened) in &results {
                assert_eq!(
                    opened.is_ok(),
                    *seed == stored.seed,
                    "round {round}: seed {seed}"
                );
            }
            drop(results);
            let leftovers: Vec<_> = std::fs::read_dir(&root)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| n != "config.toml" && n != "lock")
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    #[test]
    fn a_run_open_elsewhere_is_not_corrected_and_one_with_saved_results_never() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run");
        let first = RunConfig::default();
        let second = RunConfig {
            seed: 5,
            ..RunConfig::default()
        };
        let held = RunDir::open(&root, Some(&first), OpenMode::Start).unwrap();
        let e = RunDir::open(&root, Some(&second), OpenMode::Start).unwrap_err();
        assert!(e.to_string().contains("another command has it open"), "{e}");
        drop(held);
        let (_, cfg) = RunDir::open(&root, Some(&second), OpenMode::Start).unwrap();
        assert_eq!(cfg.seed, 5);
        let saved = root.join("stages/meta/state.safetensors");
        std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
        std::fs::write(&saved, b"x").unwrap();
        let e = RunDir::open(&root, Some(&first), OpenMode::Start).unwrap_err();
        assert!(e.to_string().contains("saved results under it"), "{e}");
        // without config.toml, saved results are not adopted by a new config
        std::fs::remove_file(root.join("config.toml")).unwrap();
        let e = RunDir::open(&root, Some(&first), OpenMode::Start).unwrap_err();
        assert!(e.to_string().contains("no config.toml"), "{e}");
        assert!(!root.join("config.toml").exists());
    }
}
