//! What watches a training loop from outside it: the event log, the progress display, the
//! checkpoint policy, stop signals and injected faults. The trainer tells its [`Observers`]
//! what happened and does what they ask (save, stop); it reaches no global itself, so a test
//! or another front end hands it other observers.

use super::evaluate::{EvalResult, EvalWatch};
use crate::events::{EvalSplit, Event, StageId};
use crate::interrupt::StopSignal;
use crate::telemetry::EventLog;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;

/// Where a resumed stage continues: epoch (0-based) and step within it, from `path`.
pub struct Resumed {
    pub path: std::path::PathBuf,
    pub epoch: usize,
    pub step_in_epoch: u64,
}

/// The stage is about to train (fields of [`Event::StageStarted`]).
pub struct Started {
    pub epochs: usize,
    pub steps_per_epoch: u64,
    pub resumed_epochs: usize,
    pub resumed_from: Option<Resumed>,
    pub params_total: usize,
    pub params_trainable: usize,
    pub needs: Vec<StageId>,
}

/// An epoch starts (or resumes at `position` steps into it).
pub struct EpochBegins {
    pub epoch: usize,
    pub epochs: usize,
    pub steps: u64,
    pub position: u64,
}

/// An optimizer step is done.
pub struct StepDone<'a> {
    /// Steps done in the stage (1-based).
    pub step: u64,
    pub epoch: usize,
    /// Steps done in the epoch (1-based), of `epoch_steps`.
    pub step_in_epoch: u64,
    pub epoch_steps: u64,
    pub steps_per_epoch: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub samples_per_sec: f64,
    pub terms: &'a BTreeMap<String, f64>,
}

/// A split was evaluated as of the end of `epoch` (1-based).
pub struct Evaluated {
    pub step: u64,
    pub epoch: usize,
    pub split: EvalSplit,
    pub result: EvalResult,
}

/// An epoch ended: its train loss and its evaluation.
pub struct EpochEnds {
    /// Epochs done (1-based), of `epochs`.
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub split: EvalSplit,
    pub eval: EvalResult,
    pub samples_per_sec: f64,
}

/// What an observer asks of the trainer after a step or an epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ask {
    Continue,
    /// Save the resumable state now.
    Save,
    /// Save and stop: a signal asked the stage to end.
    Stop(StopSignal),
}

impl Ask {
    /// The stronger of two asks: a stop over a save over nothing.
    fn and(self, other: Ask) -> Ask {
        match (self, other) {
            (Ask::Stop(s), _) | (_, Ask::Stop(s)) => Ask::Stop(s),
            (Ask::Save, _) | (_, Ask::Save) => Ask::Save,
            _ => Ask::Continue,
        }
    }
}

/// One watcher of a training loop; every hook does nothing unless implemented.
pub trait Observer {
    fn started(&mut self, _s: &Started) {}
    fn epoch_begins(&mut self, _e: &EpochBegins) {}
    fn step(&mut self, _s: &StepDone) -> Ask {
        Ask::Continue
    }
    /// Before each evaluation batch: a signal stops the evaluation.
    fn eval_batch_begins(&mut self) -> Option<StopSignal> {
        None
    }
    fn eval_batch_done(&mut self) {}
    fn evaluated(&mut self, _e: &Evaluated) {}
    fn epoch_ends(&mut self, _e: &EpochEnds) -> Ask {
        Ask::Continue
    }
    /// The loop ends early (an error or a stop).
    fn abandoned(&mut self) {}
}

/// The observers of one training loop, called in order.
pub struct Observers<'a>(pub Vec<Box<dyn Observer + 'a>>);

impl<'a> Observers<'a> {
    /// None: a loop nobody watches (tests of the training code).
    pub fn none() -> Observers<'static> {
        Observers(Vec::new())
    }

    /// What an evaluation outside a training loop (`incubator eval`, the stacked modules'
    /// numbers) watches: stop signals and injected faults, as a stage's evaluations do.
    pub fn for_evaluation() -> Observers<'static> {
        Observers(vec![Box::new(StopSignals), Box::new(FaultInjection)])
    }

    /// Only the events, into `log`.
    pub fn log_only(log: &'a mut EventLog) -> Observers<'a> {
        Observers(vec![Box::new(LogEvents(log))])
    }

    /// A stage's usual watchers: `log`, a progress bar when `show_progress`, a save every
    /// `every_steps` optimizer steps (0: at epoch ends only), stop signals and
    /// `INCUBATOR_CRASH_AT` faults.
    pub fn standard(
        log: &'a mut EventLog,
        stage: StageId,
        show_progress: bool,
        every_steps: u64,
    ) -> Observers<'a> {
        Observers(vec![
            Box::new(LogEvents(log)),
            Box::new(Progress::new(stage, show_progress)),
            Box::new(FaultInjection),
            Box::new(CheckpointEvery(every_steps)),
            Box::new(StopSignals),
        ])
    }

    /// [`Observers::standard`] for a rank other than 0 of several training one stage: no
    /// display (rank 0's speaks for them all); the same saves, stops and faults.
    pub fn other_rank(log: &'a mut EventLog, every_steps: u64) -> Observers<'a> {
        Observers(vec![
            Box::new(LogEvents(log)),
            Box::new(FaultInjection),
            Box::new(CheckpointEvery(every_steps)),
            Box::new(StopSignals),
        ])
    }

    pub fn started(&mut self, s: &Started) {
        self.0.iter_mut().for_each(|o| o.started(s));
    }
    pub fn epoch_begins(&mut self, e: &EpochBegins) {
        self.0.iter_mut().for_each(|o| o.epoch_begins(e));
    }
    pub fn step(&mut self, s: &StepDone) -> Ask {
        self.0
            .iter_mut()
            .fold(Ask::Continue, |ask, o| ask.and(o.step(s)))
    }
    pub fn evaluated(&mut self, e: &Evaluated) {
        self.0.iter_mut().for_each(|o| o.evaluated(e));
    }
    pub fn epoch_ends(&mut self, e: &EpochEnds) -> Ask {
        self.0
            .iter_mut()
            .fold(Ask::Continue, |ask, o| ask.and(o.epoch_ends(e)))
    }
    pub fn abandoned(&mut self) {
        self.0.iter_mut().for_each(|o| o.abandoned());
    }
}

impl EvalWatch for Observers<'_> {
    fn before_batch(&mut self) -> Option<StopSignal> {
        self.0.iter_mut().find_map(|o| o.eval_batch_begins())
    }
    fn after_batch(&mut self) {
        self.0.iter_mut().for_each(|o| o.eval_batch_done());
    }
}

/// The events of the stage's log: its start, every step, every evaluation.
pub struct LogEvents<'a>(pub &'a mut EventLog);

impl Observer for LogEvents<'_> {
    fn started(&mut self, s: &Started) {
        let (held_s, queued_s) = crate::telemetry::host::slurm_wait().unzip();
        self.0.emit(Event::StageStarted {
            host: crate::telemetry::host::hostname(),
            pid: std::process::id(),
            epochs: s.epochs,
            steps_per_epoch: s.steps_per_epoch as usize,
            resumed_epochs: s.resumed_epochs,
            params_total: s.params_total,
            params_trainable: s.params_trainable,
            depends_on: s.needs.iter().filter_map(|n| n.module).collect(),
            needs: Some(s.needs.clone()),
            held_s,
            queued_s,
        });
    }
    fn step(&mut self, s: &StepDone) -> Ask {
        self.0.emit(Event::TrainStep {
            step: s.step,
            epoch: s.epoch as f64 + s.step_in_epoch as f64 / s.steps_per_epoch as f64,
            loss: s.loss,
            lr: s.lr,
            grad_norm: s.grad_norm,
            samples_per_sec: s.samples_per_sec,
            // One term is the loss itself: logged only when there are several.
            terms: if s.terms.len() > 1 {
                s.terms.clone()
            } else {
                Default::default()
            },
        });
        Ask::Continue
    }
    fn evaluated(&mut self, e: &Evaluated) {
        self.0.emit(Event::Eval {
            step: e.step,
            epoch: e.epoch,
            split: e.split,
            top1: e.result.top1,
            top5: e.result.top5,
            loss: e.result.loss,
        });
    }
}

/// A progress bar per epoch (when shown) and a line per finished epoch (always).
pub struct Progress {
    stage: StageId,
    show: bool,
    bar: ProgressBar,
}

impl Progress {
    pub fn new(stage: StageId, show: bool) -> Progress {
        Progress {
            stage,
            show,
            bar: ProgressBar::hidden(),
        }
    }
}

impl Observer for Progress {
    fn started(&mut self, s: &Started) {
        if let Some(r) = &s.resumed_from {
            eprintln!(
                "[{}] resuming at epoch {} step {}/{} from {}",
                self.stage,
                r.epoch + 1,
                r.step_in_epoch,
                s.steps_per_epoch,
                r.path.display()
            );
        }
    }
    fn epoch_begins(&mut self, e: &EpochBegins) {
        if !self.show {
            return;
        }
        let bar = ProgressBar::new(e.steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} {msg} {per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} ep {}/{}", self.stage, e.epoch + 1, e.epochs));
        bar.set_position(e.position);
        self.bar = bar;
    }
    fn step(&mut self, s: &StepDone) -> Ask {
        self.bar
            .set_message(format!("loss {:.3} lr {:.2e}", s.loss, s.lr));
        self.bar.inc(1);
        Ask::Continue
    }
    fn epoch_ends(&mut self, e: &EpochEnds) -> Ask {
        self.bar.finish_and_clear();
        let split = e.split;
        eprintln!(
            "[{}] epoch {}/{}  train loss {:.4}  {split} loss {:.4}  {split} top-1 {:.2}%  {:.0} samples/s",
            self.stage,
            e.epoch,
            e.epochs,
            e.train_loss,
            e.eval.loss,
            100.0 * e.eval.top1,
            e.samples_per_sec
        );
        Ask::Continue
    }
    fn abandoned(&mut self) {
        self.bar.abandon();
    }
}

/// A resumable state every `n` optimizer steps (0: at epoch ends only).
pub struct CheckpointEvery(pub u64);

impl Observer for CheckpointEvery {
    fn step(&mut self, s: &StepDone) -> Ask {
        match self.0 > 0 && s.step % self.0 == 0 {
            true => Ask::Save,
            false => Ask::Continue,
        }
    }
}

/// SIGTERM / SIGINT / SIGUSR1 (`crate::interrupt`): the stage saves and stops at the next
/// step, evaluation batch or epoch end.
pub struct StopSignals;

impl Observer for StopSignals {
    fn step(&mut self, _: &StepDone) -> Ask {
        crate::interrupt::requested().map_or(Ask::Continue, Ask::Stop)
    }
    fn eval_batch_begins(&mut self) -> Option<StopSignal> {
        crate::interrupt::requested()
    }
    fn epoch_ends(&mut self, _: &EpochEnds) -> Ask {
        crate::interrupt::requested().map_or(Ask::Continue, Ask::Stop)
    }
}

/// `INCUBATOR_CRASH_AT` (`crate::faults`): deliberate kills at chosen steps and evaluation
/// batches, for the crash tests.
pub struct FaultInjection;

impl Observer for FaultInjection {
    fn step(&mut self, _: &StepDone) -> Ask {
        crate::faults::after_step();
        Ask::Continue
    }
    fn eval_batch_done(&mut self) {
        crate::faults::after_eval_batch();
    }
}
