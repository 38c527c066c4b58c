//! Helpers shared by the integration tests: run the real binary on small real data.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// A configuration small enough for CI (2 cores) that still learns the embedded MNIST subset.
pub const TINY: &str = r#"
seed = 1
[model]
embed_dim = 32
depth = 4
num_heads = 2
[split]
divided_depths = [1, 1, 1, 1]
[data]
train_limit = 1024
test_limit = 256
[augment]
mix_prob = 0.0
[optim]
batch_size = 32
[meta]
epochs = 3
[incubate]
epochs = 2
[finetune]
epochs = 2
[e2e]
epochs = 8
"#;

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
