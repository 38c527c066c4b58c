//! The layout of a sweep directory (`incubator sweep`), for everything that reads one: the
//! sweep itself, the live server and the dashboard. `sweep.json` lists the grid's points and
//! the seeds; each run is an ordinary run directory at `runs/<point>/seed<N>`.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The run directory of one point and seed.
pub fn run_dir(root: &Path, point: &str, seed: u64) -> PathBuf {
    root.join("runs").join(point).join(format!("seed{seed}"))
}

/// One run of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRun {
    /// `point/seedN`: unique within the sweep.
    pub name: String,
    pub point: String,
    pub seed: u64,
    pub dir: PathBuf,
}

#[derive(Deserialize)]
struct Plan {
    points: Vec<Point>,
    seeds: Vec<u64>,
}

#[derive(Deserialize)]
struct Point {
    name: String,
}

/// Why a sweep's plan cannot be read.
#[derive(Debug)]
pub enum SweepPlanError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    NotAPlan {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl std::fmt::Display for SweepPlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SweepPlanError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            SweepPlanError::NotAPlan { path, source } => write!(
                f,
                "{} is not a sweep plan ({source}); run the sweep command again to rewrite it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SweepPlanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SweepPlanError::Read { source, .. } => Some(source),
            SweepPlanError::NotAPlan { source, .. } => Some(source),
        }
    }
}

/// Every run `root/sweep.json` plans, whether it has started or not, points in grid order.
pub fn runs_of(root: &Path) -> Result<Vec<SweepRun>, SweepPlanError> {
    let path = root.join("sweep.json");
    let text = std::fs::read_to_string(&path).map_err(|source| SweepPlanError::Read {
        path: path.clone(),
        source,
    })?;
    let plan: Plan =
        serde_json::from_str(&text).map_err(|source| SweepPlanError::NotAPlan { path, source })?;
    Ok(plan
        .points
        .iter()
        .flat_map(|p| {
            plan.seeds.iter().map(move |&seed| SweepRun {
                name: format!("{}/seed{seed}", p.name),
                point: p.name.clone(),
                seed,
                dir: run_dir(root, &p.name, seed),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_follow_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sweep.json"),
            r#"{"title":"t","points":[{"name":"depth=8","coords":[]},{"name":"depth=16"}],"seeds":[0,1],"axes":[]}"#,
        )
        .unwrap();
        let runs = runs_of(dir.path()).unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "depth=8/seed0",
                "depth=8/seed1",
                "depth=16/seed0",
                "depth=16/seed1"
            ]
        );
        assert_eq!(runs[3].dir, dir.path().join("runs/depth=16/seed1"));
        std::fs::write(dir.path().join("sweep.json"), "{").unwrap();
        let e = runs_of(dir.path()).unwrap_err();
        assert!(matches!(e, SweepPlanError::NotAPlan { .. }), "{e}");
        assert!(
            e.to_string().contains("sweep.json is not a sweep plan"),
            "{e}"
        );
    }
}
