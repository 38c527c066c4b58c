//! What the dashboard knows about each run, built up record by record from the event stream
//! (the same records the engine writes to `events/<stage>.jsonl`).

use crate::series::Series;
use incubator_compare::{compare, Comparison, StageResult};
use incubator_events::plan::{Baseline, StagePlan};
use incubator_events::{EvalSplit, Event, Record, StageId, StageKind, TeacherCost};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Finished,
    Failed,
    /// Stopped by a signal with its state saved; resumes when run again.
    Interrupted,
    Skipped,
}

/// How a process's time on a stage ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentEnd {
    /// Still running (its last record is the end so far).
    #[serde(rename = "running")]
    Open,
    Finished,
    Failed,
    Interrupted,
    /// Another process started the stage again without this one saying it stopped: it was
    /// killed or its machine went away.
    Lost,
}

/// One process's time on a stage: from its start record to its last.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub host: String,
    pub pid: u32,
    /// Seconds since the run's first record.
    pub start: f64,
    pub end: f64,
    pub ended: SegmentEnd,
    /// It continued from a checkpoint (epochs already done).
    pub resumed: bool,
    /// Seconds the Slurm job waited in the queue after its dependencies were met, and from its
    /// submission until then (only for stages run as Slurm jobs).
    pub queued_s: Option<f64>,
    pub held_s: Option<f64>,
}

/// One stage (or one module's incubation) of a run.
#[derive(Clone, Debug)]
pub struct StageView {
    pub id: StageId,
    pub status: Status,
    /// Where it ran: host and process id (stages may run on different machines).
    pub host: String,
    pub pid: u32,
    pub epochs: usize,
    pub steps_per_epoch: usize,
    pub epoch: f64,
    pub started: f64,
    pub updated: f64,
    pub loss: Series,
    pub lr: Series,
    pub grad_norm: Series,
    pub samples_per_sec: Series,
    /// A plugin's named loss terms (`aux_ce`, `kd`, ...), when the loss has several.
    pub terms: BTreeMap<String, Series>,
    /// Per-epoch evaluation on the validation split (runs that hold one out).
    pub val_top1: Series,
    pub val_loss: Series,
    /// Evaluation on the test split: every epoch in a run without a validation split, once
    /// at the end of the stage in a run with one.
    pub test_top1: Series,
    pub test_loss: Series,
    pub wall_s: Option<f64>,
    pub gflop: Option<f64>,
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub error: Option<String>,
    /// The modules an incubation waited for.
    pub depends_on: Vec<usize>,
    /// The stages it waited for, by the run's plan (`None` in logs from before plans).
    pub needs: Option<Vec<StageId>>,
    /// The teachers a finished incubation distilled from, with their cost.
    pub teachers: Vec<TeacherCost>,
    /// Every process that worked on it, in order.
    pub segments: Vec<Segment>,
}

impl StageView {
    fn new(id: StageId, time: f64) -> StageView {
        StageView {
            id,
            status: Status::Running,
            host: String::new(),
            pid: 0,
            epochs: 0,
            steps_per_epoch: 0,
            epoch: 0.0,
            started: time,
            updated: time,
            loss: Series::default(),
            lr: Series::default(),
            grad_norm: Series::default(),
            samples_per_sec: Series::default(),
            terms: BTreeMap::new(),
            val_top1: Series::default(),
            val_loss: Series::default(),
            test_top1: Series::default(),
            test_loss: Series::default(),
            wall_s: None,
            gflop: None,
            top1: None,
            top5: None,
            error: None,
            depends_on: Vec::new(),
            needs: None,
            teachers: Vec::new(),
            segments: Vec::new(),
        }
    }

    /// Fraction of the stage's epochs done, 0..=1.
    pub fn progress(&self) -> f64 {
        match self.status {
            Status::Finished | Status::Skipped => 1.0,
            _ if self.epochs == 0 => 0.0,
            _ => (self.epoch / self.epochs as f64).clamp(0.0, 1.0),
        }
    }

    /// Seconds left at the recent pace, while running.
    pub fn eta_s(&self) -> Option<f64> {
        let p = self.progress();
        (self.status == Status::Running && p > 0.0 && p < 1.0)
            .then(|| (self.updated - self.started) * (1.0 - p) / p)
    }

    /// What a finished stage measured, as the comparison takes it.
    pub fn result(&self) -> Option<StageResult> {
        Some(StageResult {
            top1: self.top1?,
            top5: self.top5.unwrap_or(f64::NAN),
            gflop: self.gflop?,
            wall_s: self.wall_s?,
        })
    }

    pub fn metric(&self, m: Metric) -> &Series {
        match m {
            Metric::Loss => &self.loss,
            Metric::LearningRate => &self.lr,
            Metric::GradNorm => &self.grad_norm,
            Metric::Throughput => &self.samples_per_sec,
            Metric::ValTop1 => &self.val_top1,
            Metric::ValLoss => &self.val_loss,
            Metric::TestTop1 => &self.test_top1,
            Metric::TestLoss => &self.test_loss,
        }
    }
}

/// The curves a stage has.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Metric {
    Loss,
    LearningRate,
    GradNorm,
    Throughput,
    // the validation split's curves before the test split's: they are the per-epoch ones
    ValTop1,
    ValLoss,
    TestTop1,
    TestLoss,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::Loss,
        Metric::ValTop1,
        Metric::ValLoss,
        Metric::TestTop1,
        Metric::TestLoss,
        Metric::LearningRate,
        Metric::GradNorm,
        Metric::Throughput,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::Loss => "train loss",
            Metric::LearningRate => "learning rate",
            Metric::GradNorm => "gradient norm",
            Metric::Throughput => "samples/s",
            Metric::ValTop1 => "val top-1",
            Metric::ValLoss => "val loss",
            Metric::TestTop1 => "test top-1",
            Metric::TestLoss => "test loss",
        }
    }
}

/// One run directory (or one server stream).
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub name: String,
    /// The configuration this run is a seed of (a sweep point); `None` for a run on its own.
    pub group: Option<String>,
    pub stages: BTreeMap<StageId, StageView>,
    /// Time of the run's first record: x = 0 on the time axis.
    pub t0: Option<f64>,
    /// The run's resolved config (TOML), when the source has it.
    pub config: Option<String>,
    /// Records applied so far (a reconnecting client resumes after them).
    pub records: usize,
}

impl Run {
    pub fn new(name: impl Into<String>) -> Run {
        Run {
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn apply(&mut self, r: &Record) {
        self.records += 1;
        let t0 = *self.t0.get_or_insert(r.time);
        let t = r.time - t0;
        let s = self
            .stages
            .entry(r.stage)
            .or_insert_with(|| StageView::new(r.stage, r.time));
        s.updated = r.time;
        if let Some(open) = s
            .segments
            .last_mut()
            .filter(|g| g.ended == SegmentEnd::Open)
        {
            open.end = t;
        }
        let close = |s: &mut StageView, how: SegmentEnd| {
            if let Some(open) = s
                .segments
                .last_mut()
                .filter(|g| g.ended == SegmentEnd::Open)
            {
                open.ended = how;
            }
        };
        match &r.event {
            Event::StageStarted {
                host,
                pid,
                epochs,
                steps_per_epoch,
                resumed_epochs,
                depends_on,
                needs,
                queued_s,
                held_s,
                ..
            } => {
                close(s, SegmentEnd::Lost);
                s.segments.push(Segment {
                    host: host.clone(),
                    pid: *pid,
                    start: t,
                    end: t,
                    ended: SegmentEnd::Open,
                    resumed: *resumed_epochs > 0,
                    queued_s: *queued_s,
                    held_s: *held_s,
                });
                s.status = Status::Running;
                s.depends_on = depends_on.clone();
                s.needs = needs.clone();
                s.host = host.clone();
                s.pid = *pid;
                s.epochs = *epochs;
                s.steps_per_epoch = *steps_per_epoch;
                s.epoch = *resumed_epochs as f64;
                s.started = r.time;
                s.error = None;
            }
            Event::TrainStep {
                step,
                epoch,
                loss,
                lr,
                grad_norm,
                samples_per_sec,
                terms,
            } => {
                let x = *step as f64;
                for (name, value) in terms {
                    s.terms
                        .entry(name.clone())
                        .or_default()
                        .push(x, *epoch, t, *value);
                }
                s.epoch = *epoch;
                s.loss.push(x, *epoch, t, *loss);
                s.lr.push(x, *epoch, t, *lr);
                s.grad_norm.push(x, *epoch, t, *grad_norm);
                s.samples_per_sec.push(x, *epoch, t, *samples_per_sec);
            }
            Event::Eval {
                step,
                epoch,
                split,
                top1,
                loss,
                ..
            } => {
                let (x, e) = (*step as f64, *epoch as f64);
                s.epoch = s.epoch.max(e);
                let (top1s, losses) = match split {
                    EvalSplit::Val => (&mut s.val_top1, &mut s.val_loss),
                    // `incubator eval` writes no events: a stage evaluates val or test
                    EvalSplit::Test | EvalSplit::Train => (&mut s.test_top1, &mut s.test_loss),
                };
                top1s.push(x, e, t, *top1);
                losses.push(x, e, t, *loss);
            }
            Event::StageFinished {
                wall_s,
                train_gflop,
                top1,
                top5,
                teachers,
                ..
            } => {
                s.teachers = teachers.clone();
                close(s, SegmentEnd::Finished);
                s.status = Status::Finished;
                s.wall_s = Some(*wall_s);
                s.gflop = Some(*train_gflop);
                s.top1 = Some(*top1);
                s.top5 = Some(*top5);
            }
            Event::StageSkipped { .. } => {
                if s.status != Status::Finished {
                    s.status = Status::Skipped;
                }
            }
            Event::StageFailed { error } => {
                close(s, SegmentEnd::Failed);
                s.status = Status::Failed;
                s.error = Some(error.clone());
            }
            Event::StageInterrupted { message, .. } => {
                close(s, SegmentEnd::Interrupted);
                s.status = Status::Interrupted;
                s.error = Some(message.clone());
            }
        }
    }

    /// Incubation stages in module order.
    pub fn incubations(&self) -> impl Iterator<Item = &StageView> {
        self.stages
            .values()
            .filter(|s| s.id.stage == StageKind::Incubate)
    }

    pub fn stage(&self, id: StageId) -> Option<&StageView> {
        self.stages.get(&id)
    }

    /// What stage `id` waited for: as its start recorded the run's plan, or for logs from
    /// before plans were recorded, as the plan of the modules seen would have it (the
    /// baseline counted as independent).
    pub fn needs(&self, id: StageId) -> Vec<StageId> {
        if let Some(needs) = self.stage(id).and_then(|s| s.needs.clone()) {
            return needs;
        }
        let deps: Vec<Vec<usize>> = self.incubations().map(|s| s.depends_on.clone()).collect();
        StagePlan::assembling(&deps, Baseline::Beside)
            .map(|plan| plan.needs(id).to_vec())
            .unwrap_or_default()
    }

    /// The paper-style comparison ([`incubator_compare::compare`], as the report computes
    /// it), once the stages it needs have finished.
    pub fn comparison(&self) -> Option<Comparison> {
        let done = |id: StageId| self.stage(id).filter(|s| s.status == Status::Finished);
        let meta = done(StageId::META)?;
        let assemble = done(StageId::ASSEMBLE)?;
        let incubations: Vec<&StageView> = self.incubations().collect();
        if incubations.is_empty() || incubations.iter().any(|s| s.status != Status::Finished) {
            return None;
        }
        let depends_on: Vec<Vec<usize>> =
            incubations.iter().map(|s| s.depends_on.clone()).collect();
        let results: Vec<StageResult> = incubations.iter().filter_map(|s| s.result()).collect();
        Some(compare(
            meta.result().as_ref(),
            &results,
            &depends_on,
            &assemble.result()?,
            done(StageId::E2E).and_then(|s| s.result()).as_ref(),
            &incubations
                .iter()
                .flat_map(|s| s.teachers.clone())
                .collect::<Vec<_>>(),
        ))
    }
}

#[cfg(test)]
mod tests;
