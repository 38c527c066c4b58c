//! The stages of Deep Model Assembling, each runnable as its own process that talks to the
//! others only through the run directory: `meta` (phase PT), `incubate` (phase MT, one process
//! per module), `assemble` (phase FT: stack, then fine-tune), and the `e2e` baseline.

pub mod assemble;
pub mod context;
pub mod e2e;
pub mod eval;
pub mod import;
pub mod incubate;
pub mod memory;
pub mod meta;
pub mod open_run;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod teacher;
pub mod teacher_spec;
pub mod timm;
pub mod worklist;

pub use context::Engine;
pub use open_run::{OpenRun, PluginSources};
