//! incubator-core: the Deep Model Assembling engine.
//!
//! A reader finds the pieces by name: `model/` (the ViT built from dfdx tensor ops, addressed by
//! parameter paths), `split.rs` (cutting the target into modules), `train/` (the DeiT recipe:
//! `trainer.rs` with its `observe.rs` watchers), `stages/` (meta, incubate, assemble, e2e, and
//! the whole pipeline), `plugin/` (the interfaces the stages go through), `data/`,
//! `checkpoint.rs`, `run_dir/` (with where each stage's files live) and `telemetry/` (the event
//! stream to JSONL and TensorBoard). Plugins see only `sdk`.
//!
//! Layers, bottom first, each importing only its own and lower ones (tests/layering.rs holds
//! it, and that no two files import each other): `device`, `interrupt`, `faults`,
//! `stage_lock`, `collective`; `ops`, `data`, `telemetry`; `model`, `config`, `checkpoint`, `split`;
//! `train`; `run_dir`; `plugin`; `stages`, `sdk`.

// `plugin_options!` names the engine's serde by this path, inside the engine as in a plugin.
extern crate self as incubator_core;

pub mod collective;
pub mod data;
pub mod device;
pub mod faults;
pub mod interrupt;
pub mod model;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod ops;
pub mod panic_message;
pub mod telemetry;

pub use incubator_events as events;
// Plugins build on the engine's own copies (one dfdx in the process: see plugin/loader.rs).
pub use anyhow;
pub use dfdx;
pub mod checkpoint;
pub mod config;
pub mod plugin;
pub mod run_dir;
pub mod sdk;
pub mod split;
pub mod stage_lock;
pub mod stages;
pub mod train;
