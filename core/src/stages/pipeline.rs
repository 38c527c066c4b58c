//! `incubator run`: every stage in one process, then the comparison table. Each stage skips
//! itself if finished, so an interrupted pipeline continues where it stopped.
//!
//! Independent stages run at the same time, `jobs` at once, as the method intends: the E2E
//! baseline beside the meta model, and the K incubations beside each other. Every stage's
//! result depends only on the run seed and its inputs on disk, so the schedule does not change
//! any number.

use super::{assemble, e2e, incubate, meta, report, Engine};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub fn run(engine: &Engine, jobs: usize) -> anyhow::Result<report::Report> {
    let jobs = jobs.max(1);
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let fail = |e: anyhow::Error| errors.lock().expect("no panics while holding it").push(e);
    std::thread::scope(|scope| {
        let baseline =
            (engine.cfg.e2e.enabled && jobs > 1).then(|| scope.spawn(|| e2e::run(engine)));
        let method = || -> anyhow::Result<()> {
            meta::run(engine)?;
            // With the baseline running beside us, one worker fewer for incubations.
            let workers = if baseline.is_some() {
                (jobs - 1).max(1)
            } else {
                jobs
            };
            let next = AtomicUsize::new(0);
            std::thread::scope(|inner| {
                for _ in 0..workers.min(engine.split.k()) {
                    inner.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= engine.split.k() {
                            break;
                        }
                        if let Err(e) = incubate::run(engine, i) {
                            fail(e);
                        }
                    });
                }
            });
            if !errors
                .lock()
                .expect("no panics while holding it")
                .is_empty()
            {
                return Ok(()); // reported below; assembly never runs on partial results
            }
            assemble::run(engine)?;
            Ok(())
        };
        if let Err(e) = method() {
            fail(e);
        }
        match baseline.map(|h| h.join()) {
            Some(Ok(Err(e))) => fail(e),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => {}
        }
    });
    let mut errors = errors.into_inner().expect("threads are done");
    if let Some(first) = errors.pop() {
        for e in &errors {
            eprintln!("error: {e:#}");
        }
        return Err(first);
    }
    if engine.cfg.e2e.enabled && jobs == 1 {
        e2e::run(engine)?;
    }
    let report = report::Report::from_run(&engine.run, engine.split.k())?;
    report.write(&engine.run)?;
    Ok(report)
}
