//! Test support, kept out of the engine: the tiny run every integration test trains
//! ([`config`]) and the check every plugin crate's test runs ([`plugin_check`]).

pub mod config;
pub mod plugin_check;

pub use config::{replaced, with_keys, TINY_TOML};
pub use plugin_check::{assert_same, check_plugin, compiled_in_vs_library, library_next_to_test};
