//! Helpers shared by the integration tests: run the real binary on small real data.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// A configuration small enough for CI (2 cores) that still learns the embedded MNIST subset.
pub const TINY: &str = incubator_core::plugin::selfcheck::TINY_TOML;

pub fn incubator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(args)
        .output()
        .expect("the binary starts")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

pub fn assert_ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed:\n{}", stderr(o));
}
