//! Everything a stage needs, opened once per process from the run directory: the run
//! ([`OpenRun`]) and its data.

pub use super::open_run::{OpenRun, PluginSources};
use crate::checkpoint;
use crate::config::RunConfig;
use crate::data::{self, Data, DataSplit, DatasetName};
use crate::events::{Event, StageId};
use crate::run_dir::{OpenMode, StageSummary};
use crate::telemetry::EventLog;
use crate::train::{self, TrainOutcome};
use std::path::Path;

/// A run opened for training: what the run is ([`OpenRun`], which an `Engine` derefs to) and
/// the data it trains on.
pub struct Engine {
    open: OpenRun,
    pub data: Data,
    pub show_progress: bool,
}

impl std::ops::Deref for Engine {
    type Target = OpenRun;
    fn deref(&self) -> &OpenRun {
        &self.open
    }
}

impl Engine {
    /// Opens the run directory (creating it with `cfg` where `mode` allows) and loads the data
    /// it names.
    pub fn open(
        root: &Path,
        cfg: Option<&RunConfig>,
        mode: OpenMode,
        plugins: &PluginSources,
    ) -> anyhow::Result<Engine> {
        // A new run on an image folder is made only if the folder can be read, so a refused
        // folder leaves nothing behind; the listing is the run's data (walked once).
        let listed = match cfg {
            Some(c)
                if c.data.dataset == DatasetName::Folder && !root.join("config.toml").exists() =>
            {
                match &c.data.path {
                    Some(path) => {
                        let classes = data::folder::list_classes(path)
                            .map_err(|e| anyhow::Error::new(e).context(folder_context(path)))?;
                        Some(load_folder(c, classes)?)
                    }
                    None => None, // OpenRun names the missing data.path
                }
            }
            _ => None,
        };
        let open = OpenRun::open(root, cfg, mode, plugins)?;
        let data = match listed {
            Some(split) => Data::Folder(split),
            None => load_data(&open)?,
        };
        Ok(Engine {
            open,
            data,
            show_progress: true,
        })
    }

    /// Runs `body` as stage `id` unless its summary already exists: takes the stage's lock
    /// (one writer per stage), logs start, failure or skip, and writes the summary (the
    /// "finished" marker) after `body` saved its results.
    pub fn stage(
        &self,
        id: StageId,
        body: impl FnOnce(&mut EventLog) -> anyhow::Result<TrainOutcome>,
    ) -> anyhow::Result<StageSummary> {
        let world = crate::collective::current().ranks().world;
        let not_started = |signal: crate::interrupt::StopSignal| {
            anyhow::anyhow!(
                "stage {id} not started: {} received; run the same command again to continue",
                signal.name()
            )
        };
        if world == 1 {
            if let Some(signal) = crate::interrupt::requested() {
                return Err(not_started(signal));
            }
        }
        // Ranks training together: rank 0 takes the lock and writes every file, the others
        // compute alongside it (their writes do nothing: checkpoint::write_atomic).
        let writer = crate::collective::is_writer();
        // Before anything is written: a second process on this stage must change nothing.
        let lock = match writer {
            true => Some(crate::stage_lock::acquire(
                &self.run.lock_path(id),
                &id.slug(),
                &hostname(),
            )?),
            false => None,
        };
        if let Some(dead) = lock.as_ref().and_then(|l| l.stale.as_ref()) {
            eprintln!(
                "[{id}] taking over the lock of {dead}, which ended without releasing it (killed or crashed); resuming from its last saved state"
            );
        }
        let mut log = match writer {
            true => {
                checkpoint::remove_stale_temporaries(&self.run.stage_dir(id));
                EventLog::open(&self.run.root, id)?
            }
            false => EventLog::disabled(),
        };
        // Whether the stage is done, and a stop before it: rank 0's view, for every rank (a
        // rank that looked later would find the summary rank 0 is about to write).
        let done_here = writer && self.run.summary(id)?.is_some();
        let local_stop = crate::interrupt::requested().filter(|_| world > 1);
        let (stop, done) = crate::interrupt::agree_ranks(local_stop, u64::from(done_here));
        if let Some(signal) = stop {
            return Err(not_started(signal));
        }
        let summary = if done > 0 {
            let path = self.run.summary_path(id);
            let read = self.run.summary(id)?;
            anyhow::ensure!(
                read.is_some(),
                "rank 0 finds stage {id} finished, this rank cannot read {}: ranks training \
                 together need the run directory on a file system they all see",
                path.display()
            );
            read
        } else {
            None
        };
        if let Some(done) = summary {
            log.emit(Event::StageSkipped {
                reason: format!("{} exists", self.run.summary_path(id).display()),
            });
            eprintln!(
                "[{id}] already finished (top-1 {:.2}%), skipping",
                100.0 * done.outcome.top1
            );
            return Ok(done);
        }
        // A panic (in a plugin, say) fails this stage like an error: the run directory keeps
        // its last consistent state and the stage can be re-run after the fix.
        let result = self.check_needs(id).and_then(|()| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut log)))
                .unwrap_or_else(|panic| {
                    Err(anyhow::anyhow!(
                        "panicked: {}",
                        crate::panic_message::panic_message(&*panic)
                    ))
                })
        });
        // The stage's tensors are gone; give its cached buffers back to the system.
        dfdx::tensor::Cache::empty_cache(&self.dev());
        match result {
            Ok(outcome) => {
                log.emit(Event::StageFinished {
                    wall_s: outcome.wall_s,
                    train_gflop: outcome.train_gflop,
                    top1: outcome.top1,
                    top5: outcome.top5,
                    best_top1: outcome.best_top1,
                    best_epoch: outcome.best_epoch,
                    best_split: outcome.best_split,
                    val_top1: outcome.val.map_or(f64::NAN, |v| v.top1),
                    epochs: outcome.epochs,
                    teachers: outcome.teachers.clone(),
                });
                let summary = StageSummary {
                    stage: id,
                    outcome,
                    host: hostname(),
                    finished_at: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                    config_sha256: None, // stamped by write_summary
                    config_toml: None,
                };
                self.run.write_summary(&summary)?;
                log.flush();
                // the other ranks go on once rank 0's files are there to read
                crate::collective::current().barrier();
                Ok(summary)
            }
            Err(e) => {
                // A stop in any phase (a step, a long evaluation, listing a folder) is a stop.
                // Training and evaluation stop only when the process was asked to, so the
                // request says it; the error need not be searched for it.
                let interrupted = crate::interrupt::requested().map(|s| s.name().to_string());
                let stopped = interrupted.is_some();
                log.emit(match interrupted {
                    Some(signal) => Event::StageInterrupted {
                        signal,
                        message: format!("{e:#}"),
                    },
                    None => Event::StageFailed {
                        error: format!("{e:#}"),
                    },
                });
                log.flush();
                Err(match stopped {
                    true => e.context(format!("stage {id} stopped")),
                    false => e.context(format!("stage {id} failed")),
                })
            }
        }
    }

    /// Refuses stage `id` while a stage it needs (by the plan) has not finished, naming the
    /// commands that finish them.
    fn check_needs(&self, id: StageId) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        for &n in self.plan.needs(id) {
            if self.run.summary(n)?.is_none() {
                missing.push(n);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = missing.iter().map(|n| n.slug()).collect();
        let commands: Vec<String> = missing
            .iter()
            .map(|&n| {
                format!(
                    "`incubator {} --run-dir {}`",
                    super::plan::command(n),
                    self.run.root.display()
                )
            })
            .collect();
        anyhow::bail!(
            "stage {id} needs stage{} {} first, which {} not finished in {}; run {}",
            if missing.len() == 1 { "" } else { "s" },
            names.join(", "),
            if missing.len() == 1 { "has" } else { "have" },
            self.run.root.display(),
            commands.join(", ")
        )
    }

    /// A training job for stage `id` with this engine's data and config.
    pub fn job<'a>(
        &'a self,
        id: StageId,
        recipe: crate::config::StageRecipe,
        first_traced: usize,
        trainable: std::collections::BTreeSet<String>,
        loss: &'a train::trainer::LossFn<'a>,
    ) -> train::TrainJob<'a> {
        train::TrainJob {
            stage: id,
            cfg: &self.cfg,
            vit: &self.vit,
            recipe,
            data: &self.data,
            first_traced,
            trainable,
            taps: Vec::new(),
            loss,
            settings: None,
            state_path: Some(self.run.state_path(id)),
            needs: self.plan.needs(id).to_vec(),
        }
    }
}

impl Engine {
    /// What watches stage `id`'s training: `log`, the progress display, the checkpoint
    /// policy, stop signals, injected faults.
    pub fn observers<'l>(
        &self,
        id: StageId,
        log: &'l mut EventLog,
    ) -> train::observe::Observers<'l> {
        let every = self.cfg.checkpoint.every_steps;
        if !crate::collective::is_writer() {
            return train::observe::Observers::other_rank(log, every);
        }
        train::observe::Observers::standard(log, id, self.show_progress, every)
    }

    /// Trains every parameter of `net` end to end on the task loss (meta, fine-tune, e2e).
    pub fn train_all(
        &self,
        id: StageId,
        recipe: crate::config::StageRecipe,
        net: &mut crate::model::Network,
        log: &mut EventLog,
    ) -> anyhow::Result<TrainOutcome> {
        use crate::model::HasParams;
        let all = net.named_params().into_iter().map(|(n, _)| n).collect();
        Ok(train::train(
            self.job(id, recipe, 0, all, &train::trainer::task_loss),
            net,
            &mut crate::model::Extras::none(),
            &self.dev(),
            &mut self.observers(id, log),
        )?)
    }
}

pub use crate::telemetry::host::hostname;

/// The data of `run`: an in-memory dataset loaded and checked against the shape the model
/// was built for, or an image folder listed (and checked against the run's classes).
pub fn load_data(run: &OpenRun) -> anyhow::Result<Data> {
    let cfg = &run.cfg;
    if cfg.data.dataset != DatasetName::Folder {
        return Ok(Data::Memory(load_in_memory(cfg)?));
    }
    let root = cfg
        .data
        .path
        .as_deref()
        .expect("OpenRun checks a folder run has data.path");
    let recorded = run
        .classes
        .clone()
        .expect("OpenRun lists a folder run's classes");
    let found = data::folder::list_classes(root)
        .map_err(|e| anyhow::Error::new(e).context(folder_context(root)))?;
    data::folder::check_classes(
        &recorded,
        &found,
        &run.run.root.join(super::open_run::CLASSES_FILE),
        &root.join("train"),
    )?;
    Ok(Data::Folder(load_folder(cfg, recorded)?))
}

fn folder_context(root: &Path) -> String {
    format!(
        "cannot read the image folder data.path = {}",
        root.display()
    )
}

/// `cfg`'s image folder listed with the class list `classes`, cut to its limits and subsets.
fn load_folder(cfg: &RunConfig, classes: Vec<String>) -> anyhow::Result<data::FolderSplit> {
    let root = cfg
        .data
        .path
        .as_deref()
        .expect("a folder run has data.path");
    let mut split = data::FolderSplit::open(root, classes)
        .map_err(|e| anyhow::Error::new(e).context(folder_context(root)))?;
    for side in [&split.train, &split.test] {
        if let Some(w) = side.skipped_warning() {
            eprintln!("{w}");
        }
    }
    let d = &cfg.data;
    // A folder is ordered by class: its limits draw images at random (with subset_seed)
    // where an in-memory set's take its first ones.
    let mut train = (*split.train).clone();
    if d.train_limit > 0 {
        train = train.sample(d.train_limit, d.subset_seed);
    }
    if let Some(take) = val_rule(d) {
        let (rest, val) = train.hold_out(take, d.subset_seed);
        check_val(val.len(), &root.join("train"))?;
        train = rest;
        split.val = Some(std::sync::Arc::new(val));
    }
    if let Some(keep) = subset_rule(d) {
        train = train.balanced_subset(keep, d.subset_seed);
    }
    split.train = std::sync::Arc::new(train);
    if d.test_limit > 0 {
        split.test = std::sync::Arc::new(split.test.sample(d.test_limit, d.subset_seed));
    }
    Ok(split)
}

/// How many images of a class of `count` the class-balanced training subset keeps (at least
/// one of every class); `None` without a subset.
fn subset_rule(d: &crate::config::DataSection) -> Option<impl Fn(usize) -> usize + '_> {
    (d.train_per_class > 0 || d.train_fraction < 1.0).then_some(move |count: usize| {
        if d.train_per_class > 0 {
            d.train_per_class
        } else {
            ((d.train_fraction * count as f64).round() as usize).max(1)
        }
    })
}

/// How many images of a class of `count` the validation split holds out (at least one; a
/// class always keeps one for training); `None` without a validation split.
fn val_rule(d: &crate::config::DataSection) -> Option<impl Fn(usize) -> usize + '_> {
    d.has_val().then_some(move |count: usize| {
        if d.val_per_class > 0 {
            d.val_per_class
        } else {
            ((d.val_fraction * count as f64).round() as usize).max(1)
        }
    })
}

fn check_val(len: usize, from: &Path) -> anyhow::Result<()> {
    if len == 0 {
        anyhow::bail!(
            "the validation split (data.val_fraction / data.val_per_class) of {} is empty: no class has two training images to spare one; give more training images (data.train_limit) or set data.val_fraction = 0 to evaluate every epoch on the test split",
            from.display()
        );
    }
    Ok(())
}

/// Another dataset for `run`'s model, whole (`incubator eval --dataset`): an in-memory one
/// from `path` or the fetch cache, or an image folder at `path` (with the run's classes, when
/// the run has recorded some).
pub fn load_other(run: &OpenRun, name: &DatasetName, path: Option<&Path>) -> anyhow::Result<Data> {
    if *name != DatasetName::Folder {
        return Ok(Data::Memory(data::load(name, path, &run.cfg.cache_dir())?));
    }
    let Some(root) = path else {
        anyhow::bail!(
            "an image folder needs --data-path: the directory that holds train/ and val/"
        );
    };
    let found = data::folder::list_classes(root)?;
    if let Some(recorded) = &run.classes {
        let file = run.run.root.join(super::open_run::CLASSES_FILE);
        data::folder::check_classes(recorded, &found, &file, &root.join("train"))?;
    }
    Ok(Data::Folder(data::FolderSplit::open(root, found)?))
}

/// The in-memory dataset `cfg` names, cut to its limits and subsets; it must have the shape
/// the model was built for ([`crate::data::DatasetName::fixed_shape`]).
pub fn load_in_memory(cfg: &RunConfig) -> anyhow::Result<DataSplit> {
    let mut data = data::load(
        &cfg.data.dataset,
        cfg.data.path.as_deref(),
        &cfg.cache_dir(),
    )
    .map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "cannot load the dataset of data.dataset = {:?}",
            cfg.data.dataset.to_string()
        ))
    })?;
    if cfg.data.train_limit > 0 {
        data.train.truncate(cfg.data.train_limit);
    }
    let d = &cfg.data;
    if let Some(take) = val_rule(d) {
        let (rest, val) = data.train.hold_out(take, d.subset_seed);
        check_val(val.len, Path::new(&data.name))?;
        data.train = rest;
        data.val = Some(val);
    }
    if let Some(keep) = subset_rule(d) {
        data.train = data.train.balanced_subset(keep, d.subset_seed);
    }
    if cfg.data.test_limit > 0 {
        data.test.truncate(cfg.data.test_limit);
    }
    let (want, got) = (cfg.data.dataset.fixed_shape(), data.train.shape());
    if let Some(want) = want.filter(|w| *w != got) {
        anyhow::bail!(
            "dataset {} has {got}, not the {want} that {} has; check data.path",
            data.name,
            cfg.data.dataset
        );
    }
    Ok(data)
}
