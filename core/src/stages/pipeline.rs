//! `incubator run`: every stage of the run's plan in one process, then the comparison table.
//! Each stage skips itself if finished, so an interrupted pipeline continues where it stopped.
//!
//! Independent stages run at the same time, `jobs` at once, as the method intends: the E2E
//! baseline beside the meta model, and the K incubations beside each other. Every stage's
//! result depends only on the run seed and its inputs on disk, so the schedule does not change
//! any number.

use super::worklist::{Next, Worklist};
use super::{assemble, e2e, incubate, meta, report, Engine};
use crate::events::{StageId, StageKind};
use crate::run_dir::StageSummary;
use std::sync::{Condvar, Mutex};

/// Runs the plan, then writes the report. On CUDA one stage at a time, on this thread: one
/// GPU, and cudarc's handles cannot cross threads.
pub fn run(engine: &Engine, jobs: usize) -> anyhow::Result<report::Report> {
    let mut errors = run_plan(engine, jobs.max(1));
    if let Some(first) = errors.pop() {
        for e in &errors {
            eprintln!("error: {e:#}");
        }
        return Err(first);
    }
    let report = report::Report::from_run(&engine.run, &engine.plan)?;
    report.write(&engine.run)?;
    Ok(report)
}

/// Stage `id` of the run, skipped if it has finished.
pub fn run_stage(engine: &Engine, id: StageId) -> anyhow::Result<StageSummary> {
    match (id.stage, id.module) {
        (StageKind::Meta, _) => meta::run(engine),
        (StageKind::Incubate, Some(i)) => incubate::run(engine, i),
        (StageKind::Incubate, None) => anyhow::bail!("an incubation stage names its module"),
        (StageKind::Assemble, _) => assemble::run(engine),
        (StageKind::E2e, _) => e2e::run(engine),
    }
}

/// Every stage of the plan, `jobs` workers taking the next ready one; the errors of those
/// that failed. What needs a failed stage is not started, the rest still runs.
fn run_plan(engine: &Engine, jobs: usize) -> Vec<anyhow::Error> {
    let worklist = Mutex::new(Worklist::new(&engine.plan));
    let changed = Condvar::new();
    let errors = Mutex::new(Vec::new());
    let worker = || loop {
        let id = {
            let mut s = worklist.lock().expect("no panics while holding it");
            loop {
                match s.next() {
                    Next::Run(id) => break id,
                    Next::Wait => s = changed.wait(s).expect("no panics while holding it"),
                    Next::Finished => return,
                }
            }
        };
        // a panic outside a stage's own guard must not leave the other workers waiting
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_stage(engine, id)))
                .unwrap_or_else(|panic| {
                    Err(anyhow::anyhow!(
                        "stage {id} panicked: {}",
                        crate::panic_message::panic_message(&*panic)
                    ))
                });
        let ok = result.is_ok();
        if let Err(e) = result {
            errors.lock().expect("no panics while holding it").push(e);
        }
        worklist
            .lock()
            .expect("no panics while holding it")
            .done(id, ok);
        changed.notify_all();
    };
    // On CUDA the engine cannot cross threads (cudarc's handles are neither Send nor Sync):
    // one worker, this thread.
    #[cfg(feature = "cuda")]
    {
        let _ = jobs;
        worker();
    }
    #[cfg(not(feature = "cuda"))]
    if jobs == 1 {
        worker();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(engine.plan.stages().len()) {
                scope.spawn(worker);
            }
        });
    }
    let blocked = worklist.into_inner().expect("workers are done").blocked();
    if !blocked.is_empty() {
        let names: Vec<String> = blocked.iter().map(|b| b.slug()).collect();
        eprintln!(
            "not started, because a stage they need failed: {}",
            names.join(", ")
        );
    }
    errors.into_inner().expect("workers are done")
}
