//! A sweep directory and what it holds: `sweep.json` (the grid as last run), one ordinary run
//! directory per configuration and seed (`runs/<point>/seed<N>`), the config each was created
//! with (`configs/`), the local runs' logs (`logs/`), the report and its plots.

use super::spec::{GridPoint, SweepSpec};
use incubator_core::config::RunConfig;
use incubator_core::run_dir::RunDir;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub title: String,
    /// The sweep file it was made from.
    pub spec: PathBuf,
    /// Axis names and their point labels, in grid order.
    pub axes: Vec<(String, Vec<String>)>,
    pub seeds: Vec<u64>,
    pub points: Vec<GridPoint>,
    /// The configuration whose E2E runs stand in for the others' missing ones.
    #[serde(default)]
    pub baseline: Option<String>,
}

/// One run of the sweep: a configuration and a seed.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub point: String,
    pub seed: u64,
    pub config: RunConfig,
}

pub struct SweepDir {
    pub root: PathBuf,
}

impl SweepDir {
    pub fn new(root: &Path) -> SweepDir {
        SweepDir { root: root.into() }
    }
    pub fn plan_path(&self) -> PathBuf {
        self.root.join("sweep.json")
    }
    pub fn run_dir(&self, point: &str, seed: u64) -> PathBuf {
        incubator_core::events::sweep::run_dir(&self.root, point, seed)
    }
    pub fn config_file(&self, point: &str, seed: u64) -> PathBuf {
        self.root
            .join("configs")
            .join(point)
            .join(format!("seed{seed}.toml"))
    }
    pub fn log_file(&self, point: &str, seed: u64) -> PathBuf {
        self.root
            .join("logs")
            .join(point)
            .join(format!("seed{seed}.log"))
    }

    pub fn read_plan(&self) -> anyhow::Result<Plan> {
        let path = self.plan_path();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "{} has no sweep ({}: {e}); start one with `incubator sweep run SWEEP.toml -d {}`",
                self.root.display(),
                path.display(),
                self.root.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is corrupt ({e}); run the sweep command again to rewrite it",
                path.display()
            )
        })
    }

    /// Every run of `spec`, its config checked; an existing run directory must have been
    /// created with the same config (its checkpoints were made with it). Writes `sweep.json`
    /// and the configs; trains nothing.
    pub fn prepare(&self, spec: &SweepSpec) -> anyhow::Result<(Plan, Vec<PlannedRun>)> {
        if self.root.exists() && !self.root.is_dir() {
            anyhow::bail!(
                "the sweep directory {} is a file: give a directory (-d) for the sweep's runs",
                self.root.display()
            );
        }
        let mut runs = Vec::new();
        let mut points = Vec::new();
        for (point, set) in spec.points() {
            for &seed in &spec.seeds {
                let config = spec.config(&set, seed).map_err(|e| {
                    anyhow::anyhow!(
                        "sweep {}: configuration {}: {e}",
                        spec.file.display(),
                        point.name
                    )
                })?;
                config.validate().map_err(|e| {
                    anyhow::anyhow!(
                        "sweep {}: configuration {} (seed {seed}): {e}",
                        spec.file.display(),
                        point.name
                    )
                })?;
                runs.push(PlannedRun {
                    point: point.name.clone(),
                    seed,
                    config,
                });
            }
            points.push(point);
        }
        let changed: Vec<String> = runs
            .iter()
            .filter_map(|r| {
                let stored = RunDir::at(&self.run_dir(&r.point, r.seed)).config_path();
                let same = RunConfig::load_stored(&stored).map(|c| c == r.config);
                match same {
                    Ok(false) => Some(format!("  {}", stored.display())),
                    _ => None,
                }
            })
            .collect();
        if !changed.is_empty() {
            anyhow::bail!(
                "these runs of {} were made with another config than the sweep file now gives:\n{}\nrestore the sweep file, or use a new sweep directory (-d), or delete those runs to train them again",
                self.root.display(),
                changed.join("\n")
            );
        }
        for r in &runs {
            let path = self.config_file(&r.point, r.seed);
            fs_err::create_dir_all(path.parent().expect("has a parent"))?;
            incubator_core::checkpoint::write_atomic(&path, r.config.to_toml().as_bytes())?;
        }
        let plan = Plan {
            title: spec.title.clone(),
            spec: spec.file.clone(),
            axes: spec
                .axes
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        a.points.iter().map(|p| p.label.clone()).collect(),
                    )
                })
                .collect(),
            seeds: spec.seeds.clone(),
            points,
            baseline: spec.baseline.clone(),
        };
        incubator_core::checkpoint::write_atomic(
            &self.plan_path(),
            serde_json::to_string_pretty(&plan)?.as_bytes(),
        )?;
        Ok((plan, runs))
    }
}

/// Whether every stage of the run's plan has finished (a run not made yet has not).
pub fn finished(run: &Path) -> anyhow::Result<bool> {
    if !RunDir::at(run).config_path().exists() {
        return Ok(false);
    }
    let open = crate::commands::open_existing(run)?;
    for s in open.plan.stages() {
        if open.run.summary(s.id)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}
