//! The event stream of a run: each [`Event`] goes to `RUN/events/<slug>.jsonl` (read by
//! [`read_events`] and the dashboard) and to TensorBoard files under `RUN/tensorboard/<slug>/`
//! (the stage as TensorBoard's run, the same tags in every stage).
//!
//! TensorBoard samples scalars down to 1,000 points per tag unless started with
//! `--samples_per_plugin scalars=0`.

pub mod host;
pub mod jsonl;
pub mod tensorboard;

pub use jsonl::read_events;

use incubator_events::{Event, Record, StageId};
use jsonl::JsonlWriter;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use tensorboard::TensorBoardWriter;

/// Where one stage's events go. Each sink that fails is reported once and switched off, so the
/// training run goes on with whatever logging still works.
pub struct EventLog {
    stage: StageId,
    jsonl: Option<JsonlWriter>,
    tensorboard: Option<TensorBoardWriter>,
}

impl EventLog {
    /// Appends to RUN/events/<slug>.jsonl and writes TensorBoard files under
    /// RUN/tensorboard/<slug>/.
    pub fn open(run_dir: &Path, stage: StageId) -> anyhow::Result<EventLog> {
        let slug = stage.slug();
        let events = run_dir.join("events");
        fs_err::create_dir_all(&events)?;
        let jsonl = JsonlWriter::open(&events.join(format!("{slug}.jsonl")))?;
        // the run's configuration: the stage's hyperparameters in TensorBoard's HParams table
        let config = std::fs::read_to_string(run_dir.join("config.toml")).unwrap_or_default();
        let tensorboard = TensorBoardWriter::open(
            &run_dir.join("tensorboard").join(&slug),
            incubator_compare::settings(&config),
        )?;
        Ok(EventLog {
            stage,
            jsonl: Some(jsonl),
            tensorboard: Some(tensorboard),
        })
    }

    /// A log that writes nothing (unit tests of training code).
    pub fn disabled() -> EventLog {
        EventLog {
            stage: StageId::META,
            jsonl: None,
            tensorboard: None,
        }
    }

    /// Records one event with the current wall-clock time. Never fails and never panics: a logging
    /// failure must not take a training run down.
    pub fn emit(&mut self, event: Event) {
        if self.jsonl.is_none() && self.tensorboard.is_none() {
            return;
        }
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let record = Record::new(self.stage, time, event);
        if let Some(sink) = &mut self.jsonl {
            if let Err(e) = sink.write(&record) {
                let what = format!("JSONL file {}", sink.path().display());
                self.switch_off(&what, e);
                self.jsonl = None;
            }
        }
        if let Some(sink) = &mut self.tensorboard {
            if let Err(e) = sink.write(&record) {
                self.switch_off("TensorBoard writer", e);
                self.tensorboard = None;
            }
        }
    }

    /// Lines reach the JSONL file as they are emitted; this pushes out TensorBoard's queue.
    pub fn flush(&mut self) {
        if let Some(sink) = &mut self.tensorboard {
            if let Err(e) = sink.flush() {
                self.switch_off("TensorBoard writer", e);
                self.tensorboard = None;
            }
        }
    }

    fn switch_off(&self, what: &str, err: anyhow::Error) {
        // eprintln! panics when stderr cannot be written; it is used (rather than a raw write to
        // stderr) because test harnesses capture it.
        let stage = self.stage;
        let _ = std::panic::catch_unwind(|| {
            eprintln!("warning: event log of stage {stage}: {what} failed, now off: {err:#}")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn step(step: u64) -> Event {
        Event::TrainStep {
            step,
            epoch: 0.5,
            loss: 2.0,
            lr: 1e-3,
            grad_norm: 1.0,
            samples_per_sec: 50.0,
            terms: Default::default(),
        }
    }

    #[test]
    fn emitted_events_are_read_back_with_stage_and_time() {
        let run = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(run.path(), StageId::incubate(1)).unwrap();
        log.emit(step(1));
        log.emit(Event::StageSkipped {
            reason: "done".into(),
        });
        log.flush();
        let got = read_events(run.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got
            .iter()
            .all(|r| r.stage == StageId::incubate(1) && r.time > 1.6e9));
        assert_eq!(
            (&got[0].event, &got[1].event),
            (
                &step(1),
                &Event::StageSkipped {
                    reason: "done".into()
                }
            )
        );
        assert!(run.path().join("tensorboard/incubate-1").is_dir());
    }

    #[test]
    fn disabled_writes_nothing() {
        // It has no path to write to; check that emitting does not open a sink on the side.
        let mut log = EventLog::disabled();
        log.emit(step(1));
        log.emit(Event::StageFailed { error: "x".into() });
        log.flush();
        assert!(log.jsonl.is_none() && log.tensorboard.is_none());
    }

    /// Root (as in CI) ignores permission bits, so the sinks are made to fail otherwise: the JSONL
    /// file is /dev/full (every write fails, as on a full disk) and the TensorBoard file a FIFO
    /// whose reader goes away (writes fail with a broken pipe).
    #[cfg(target_os = "linux")]
    #[test]
    fn emit_survives_sinks_that_stop_accepting_writes() {
        use std::os::unix::fs::symlink;
        let run = tempfile::tempdir().unwrap();
        fs::create_dir_all(run.path().join("events")).unwrap();
        symlink("/dev/full", run.path().join("events/meta.jsonl")).unwrap();
        // tensorboard-rs names its file events.out.tfevents.<unix seconds>.<host>.<pid>.0.
        let tb = run.path().join("tensorboard/meta");
        fs::create_dir_all(&tb).unwrap();
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let fifos: Vec<PathBuf> = (now - 1..now + 10)
            .map(|t| {
                let name = format!(
                    "events.out.tfevents.{t:010}.{}.{}.0",
                    host.trim(),
                    std::process::id()
                );
                let path = tb.join(name);
                assert!(Command::new("mkfifo")
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success());
                path
            })
            .collect();
        // Opened read-write so that opening never blocks, and so the writer thread's open does not.
        let held: Vec<fs::File> = fifos
            .iter()
            .map(|p| {
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .unwrap()
            })
            .collect();

        let mut log = EventLog::open(run.path(), StageId::META).unwrap();
        log.emit(step(1));
        assert!(
            log.jsonl.is_none(),
            "the JSONL sink should be off after its first failed write"
        );

        // Only once the writer thread holds its FIFO may the reader go, or its open would block.
        let deadline = Instant::now() + Duration::from_secs(10);
        while open_fds_to(&fifos) == held.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(held);
        // The failure surfaces at the call after the writer thread has died on a write.
        let mut n = 2;
        while log.tensorboard.is_some() && Instant::now() < deadline {
            log.emit(step(n));
            log.flush();
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            log.tensorboard.is_none(),
            "the TensorBoard sink should be off"
        );
        log.emit(step(n));
        log.flush();
        drop(log);
    }

    #[cfg(target_os = "linux")]
    fn open_fds_to(paths: &[PathBuf]) -> usize {
        let fds = fs::read_dir("/proc/self/fd").unwrap();
        fds.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|t| paths.contains(t))
            .count()
    }

    /// A sink whose writes fail (here the JSONL file is `/dev/full`, which refuses every write
    /// with ENOSPC, for root as for anyone) is switched off; training's emits go on without a
    /// panic and the other sink keeps writing.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_sink_whose_writes_fail_is_switched_off_and_the_other_goes_on() {
        let run = tempfile::tempdir().unwrap();
        fs::create_dir_all(run.path().join("events")).unwrap();
        std::os::unix::fs::symlink("/dev/full", run.path().join("events/e2e.jsonl")).unwrap();
        let mut log = EventLog::open(run.path(), StageId::E2E).unwrap();
        assert!(log.jsonl.is_some() && log.tensorboard.is_some());
        for n in 1..50 {
            log.emit(step(n));
            log.flush();
        }
        assert!(log.jsonl.is_none(), "the failing JSONL sink is off");
        assert!(log.tensorboard.is_some(), "TensorBoard still writes");
        drop(log);
        let tb = fs::read_dir(run.path().join("tensorboard/e2e")).unwrap();
        let bytes: u64 = tb.map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(bytes > 49 * 8, "TensorBoard wrote {bytes} bytes");
    }
}
