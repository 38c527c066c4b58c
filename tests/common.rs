//! Helpers shared by the integration tests: run the real binary on small real data.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A configuration small enough for CI (2 cores) that still learns the embedded MNIST subset.
pub const TINY: &str = incubator_testkit::TINY_TOML;
#[allow(unused_imports)]
pub use incubator_testkit::{replaced, with_keys};

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

/// A library cargo built for these tests (a dev-dependency's cdylib, next to the test binary).
pub fn library(crate_name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let file = deps.join(format!("lib{}.so", crate_name.replace('-', "_")));
    assert!(file.exists(), "{} was not built", file.display());
    file
}

/// Every weight file of a run (`stage/file.safetensors`) with its bytes. The resumable
/// `state.safetensors` is left out: it also records wall-clock time.
pub fn model_files(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for stage in std::fs::read_dir(run.join("stages")).unwrap() {
        let stage = stage.unwrap().path();
        for f in std::fs::read_dir(&stage).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".safetensors") && name != "state.safetensors" {
                out.push((
                    format!("{}/{name}", stage.file_name().unwrap().to_string_lossy()),
                    std::fs::read(&f).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Runs one of the tests' Python scripts (`tests/NAME.py`) with `args` under the Python whose
/// path the environment variable `var` holds (relative to the repository root; `./scripts/test.sh`
/// sets it), and parses the JSON it prints.
pub fn python_json(var: &str, script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let Some(python) = std::env::var_os(var) else {
        panic!(
            "{var} is not set: ./scripts/test.sh sets it (a venv with what tests/{script} imports)"
        );
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join(PathBuf::from(python)))
        .arg(repo.join("tests").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running tests/{script}: {e}"));
    assert!(
        out.status.success(),
        "tests/{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("tests/{script} printed no JSON: {e}"))
}

/// A tmpfs of `mib` MiB at `dir`, unmounted when dropped.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, mib: usize) -> Tmpfs {
        Tmpfs::mount_with(dir, &format!("size={mib}m"))
    }

    /// A tmpfs mounted with `options` (`ro`, `size=1m`, ...).
    pub fn mount_with(dir: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.into())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system of `path` to the last byte, then frees `leave` bytes.
pub fn fill(path: &Path, leave: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "ENOSPC, got {e}");
            break;
        }
    }
    let len = std::fs::metadata(path).unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
}
