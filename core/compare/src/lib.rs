//! The method-vs-E2E comparison of one run, statistics over seeds, and runs' settings.
//!
//! The engine's `report.md`, the sweep report and the dashboard all take their numbers from
//! here, so the three cannot disagree. Depends only on serde and statrs: builds for wasm32.

pub mod comparison;
pub mod seeds;
pub mod settings;
pub mod stats;

pub use comparison::{compare, Comparison, StageResult};
pub use seeds::{over_seeds, OverSeeds};
pub use settings::{settings, Setting};
pub use stats::{
    mean_ci, mean_ci95, mean_sd, t975, t_quantile, welch_ci, welch_ci95, MeanCi, MeanSd,
};
