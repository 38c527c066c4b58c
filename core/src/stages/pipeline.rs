//! `incubator run`: every stage in order in one process, then the comparison table. Each stage
//! skips itself if finished, so an interrupted pipeline continues where it stopped.

use super::{assemble, e2e, incubate, meta, report, Engine};

pub fn run(engine: &Engine) -> anyhow::Result<report::Report> {
    meta::run(engine)?;
    for i in 0..engine.split.k() {
        incubate::run(engine, i)?;
    }
    assemble::run(engine)?;
    if engine.cfg.e2e.enabled {
        e2e::run(engine)?;
    }
    let report = report::Report::from_run(&engine.run, engine.split.k())?;
    report.write(&engine.run)?;
    Ok(report)
}
