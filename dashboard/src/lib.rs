//! The incubator dashboard: runs as the engine's event stream describes them, drawn with egui.

pub mod series;
pub mod store;
