//! What every view reads: the open runs, fed by their sources, and their grouping into
//! configurations (the runs of one sweep point, one per seed). Views get it read-only; what a
//! view shows and how is the view's own state.

use crate::source::Source;
use crate::store::Run;

pub struct Workspace {
    pub runs: Vec<Run>,
    sources: Vec<Box<dyn Source>>,
    config_checked: f64,
}

/// Runs that share a configuration: a sweep point's seeds, or a run on its own.
pub struct Group<'a> {
    pub name: String,
    pub runs: Vec<&'a Run>,
}

impl Workspace {
    pub fn new(sources: Vec<Box<dyn Source>>) -> Workspace {
        Workspace {
            runs: sources
                .iter()
                .map(|s| {
                    let mut run = Run::new(s.name());
                    run.group = s.group();
                    run
                })
                .collect(),
            sources,
            config_checked: f64::NEG_INFINITY,
        }
    }

    /// Runs given directly (tests, benchmarks): no sources.
    pub fn with_runs(runs: Vec<Run>) -> Workspace {
        Workspace {
            runs,
            sources: Vec::new(),
            config_checked: f64::NEG_INFINITY,
        }
    }

    /// Takes in what every source has; returns whether anything changed.
    pub fn pull(&mut self, now: f64) -> bool {
        let mut changed = false;
        let check_config = now - self.config_checked > 2.0;
        for (run, source) in self.runs.iter_mut().zip(&mut self.sources) {
            for r in source.poll() {
                run.apply(&r);
                changed = true;
            }
            if run.config.is_none() && check_config {
                run.config = source.config();
                changed |= run.config.is_some();
            }
        }
        if check_config {
            self.config_checked = now;
        }
        changed
    }

    /// Problems reported by the sources.
    pub fn problems(&self) -> Vec<String> {
        self.sources.iter().filter_map(|s| s.problem()).collect()
    }

    /// The runs by configuration, in the order their first run was opened. A run without a
    /// group (a plain run directory) is a group of its own, named after it.
    pub fn groups(&self) -> Vec<Group<'_>> {
        let mut out: Vec<Group> = Vec::new();
        for run in &self.runs {
            let name = run.group.clone().unwrap_or_else(|| run.name.clone());
            match out.iter_mut().find(|g| g.name == name) {
                Some(g) => g.runs.push(run),
                None => out.push(Group {
                    name,
                    runs: vec![run],
                }),
            }
        }
        out
    }

    /// Whether any configuration has more than one run (seeds to summarise).
    pub fn has_seeds(&self) -> bool {
        self.groups().iter().any(|g| g.runs.len() > 1)
    }
}
