//! The Vision Transformer, built from dfdx tensor ops on run-time sizes.

pub mod attention;
pub mod aux_heads;
pub mod baseline_heads;
pub mod block;
pub mod config;
pub mod extras;
pub mod flops;
pub mod head;
pub mod init;
pub mod layers;
pub mod network;
pub mod params;
pub mod part;
pub mod resample;
pub mod stem;

pub use block::Mode;
pub use config::VitConfig;
pub use extras::{Extras, Role, WithExtras};
pub use init::Init;
pub use network::{Module, Network};
pub use params::{HasParams, ParamMut, ParamRef};
pub use part::{Layer, Named, Part, Traced};
