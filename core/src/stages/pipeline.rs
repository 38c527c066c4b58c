//! `incubator run`: every stage in one process, then the comparison table. Each stage skips
//! itself if finished, so an interrupted pipeline continues where it stopped.
//!
//! Independent stages run at the same time, `jobs` at once, as the method intends: the E2E
//! baseline beside the meta model, and the K incubations beside each other. Every stage's
//! result depends only on the run seed and its inputs on disk, so the schedule does not change
//! any number.

use super::{assemble, e2e, incubate, meta, report, Engine};
use std::sync::{Condvar, Mutex};

#[cfg(not(feature = "cuda"))]
pub fn run(engine: &Engine, jobs: usize) -> anyhow::Result<report::Report> {
    let jobs = jobs.max(1);
    let deps = incubate::all_dependencies(engine)?;
    if incubate::needs_e2e_first(engine)? {
        // The baseline teaches the incubations: it runs first (and then skips itself below).
        e2e::run(engine)?;
    }
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
            let queue = IncubationQueue::new(deps.clone());
            std::thread::scope(|inner| {
                for _ in 0..workers.min(engine.split.k()) {
                    inner.spawn(|| {
                        while let Some(i) = queue.next() {
                            let result = incubate::run(engine, i);
                            queue.done(i, result.is_ok());
                            if let Err(e) = result {
                                fail(e);
                            }
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
    finish(engine, &deps)
}

/// On CUDA, the stages one after another: one GPU, and cudarc's handles cannot cross threads.
#[cfg(feature = "cuda")]
pub fn run(engine: &Engine, _jobs: usize) -> anyhow::Result<report::Report> {
    let deps = incubate::all_dependencies(engine)?;
    if incubate::needs_e2e_first(engine)? {
        e2e::run(engine)?;
    }
    meta::run(engine)?;
    let queue = IncubationQueue::new(deps.clone());
    while let Some(i) = queue.next() {
        let result = incubate::run(engine, i);
        queue.done(i, result.is_ok());
        result?;
    }
    assemble::run(engine)?;
    if engine.cfg.e2e.enabled {
        e2e::run(engine)?;
    }
    finish(engine, &deps)
}

/// The comparison table of a finished run, written to the run directory.
fn finish(engine: &Engine, deps: &[Vec<usize>]) -> anyhow::Result<report::Report> {
    let report = report::Report::from_run(&engine.run, deps)?;
    report.write(&engine.run)?;
    Ok(report)
}

#[derive(Clone, Copy, PartialEq)]
enum Status {
    Waiting,
    Running,
    Done,
    Failed,
}

/// Incubations in module order, each handed out once the modules it depends on are done (a
/// sequential strategy makes a chain; the reference's modules are all independent). A module
/// whose dependency failed is never started.
struct IncubationQueue {
    deps: Vec<Vec<usize>>,
    status: Mutex<Vec<Status>>,
    changed: Condvar,
}

impl IncubationQueue {
    fn new(deps: Vec<Vec<usize>>) -> IncubationQueue {
        let status = Mutex::new(vec![Status::Waiting; deps.len()]);
        IncubationQueue {
            deps,
            status,
            changed: Condvar::new(),
        }
    }

    /// The next module to incubate; `None` when nothing is left that can run.
    fn next(&self) -> Option<usize> {
        let mut status = self.status.lock().expect("no panics while holding it");
        loop {
            for i in 0..status.len() {
                if status[i] != Status::Waiting {
                    continue;
                }
                let dep = |s: Status| self.deps[i].iter().any(|&j| status[j] == s);
                if dep(Status::Failed) {
                    status[i] = Status::Failed;
                    self.changed.notify_all();
                } else if self.deps[i].iter().all(|&j| status[j] == Status::Done) {
                    status[i] = Status::Running;
                    return Some(i);
                }
            }
            if !status.contains(&Status::Running) {
                return None; // the rest waits on failed modules (or on a cycle)
            }
            status = self
                .changed
                .wait(status)
                .expect("no panics while holding it");
        }
    }

    fn done(&self, i: usize, ok: bool) {
        let mut status = self.status.lock().expect("no panics while holding it");
        status[i] = if ok { Status::Done } else { Status::Failed };
        self.changed.notify_all();
    }
}
