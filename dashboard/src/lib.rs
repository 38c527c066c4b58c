//! The incubator dashboard: runs as the engine's event stream describes them, drawn with egui,
//! the same code natively (`incubator-dashboard`) and in the browser (WASM, served by
//! `incubator serve`).

pub mod app;
pub mod colors;
pub mod export;
pub mod series;
pub mod source;
pub mod store;
pub mod views;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use app::DashboardApp;
