//! The incubator dashboard: runs as the engine's event stream describes them, drawn with egui,
//! the same code natively (`incubator-dashboard`) and in the browser (WASM, served by
//! `incubator serve`).
//!
//! Layers, each importing only those before it in this list (tests/layering.rs holds it
//! true): `series`, `store` (a run built from its records), `bands`, `configs`, `colors`,
//! `export` (saving what a view exports), `source` (where records come from), `workspace` (the
//! open runs), `view` (the trait), `views` (one file per tab, `views/format.rs` their number
//! formats), `memory` (links and saved state), `app` (tabs over the views), `web` (the
//! browser entry point).

pub mod app;
pub mod bands;
pub mod colors;
pub mod configs;
pub mod export;
pub mod memory;
pub mod series;
pub mod source;
pub mod store;
pub mod view;
pub mod views;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod workspace;

pub use app::DashboardApp;
