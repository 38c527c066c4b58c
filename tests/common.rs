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

/// Fails, naming the file, unless `got` holds the same model files as `want`, byte for byte
/// (without printing megabytes of them).
pub fn assert_same_models(want: &Path, got: &Path, what: &str) {
    let (want, got) = (model_files(want), model_files(got));
    assert_eq!(
        want.iter().map(|f| &f.0).collect::<Vec<_>>(),
        got.iter().map(|f| &f.0).collect::<Vec<_>>(),
        "{what}: the same files"
    );
    for ((file, a), (_, b)) in want.iter().zip(&got) {
        assert!(a == b, "{what}: {file} differs");
    }
}

/// Fails unless `stage` of `run` is unfinished: a killed stage must not be marked finished.
pub fn assert_not_finished(run: &Path, stage: &str, what: &str) {
    assert!(
        !run.join("stages").join(stage).join("summary.json").exists(),
        "{what}: a killed stage must not be marked finished"
    );
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

/// Each reference strategy's `[plugins]` section (the library is added by the test).
pub fn strategies() -> Vec<(&'static str, Option<&'static str>, &'static str)> {
    vec![
        ("deep-incubation", None, ""),
        (
            "meta-kd",
            Some("incubator-meta-kd"),
            "strategy = \"meta-kd\"\n[plugins.options]\nalpha = 0.5\ntemperature = 2.0\n",
        ),
        (
            "m2mkd",
            Some("incubator-m2mkd"),
            "strategy = \"m2mkd\"\n[plugins.options]\nteacher = \"e2e\"\nalpha = 0.5\n",
        ),
        ("dgl", Some("incubator-dgl"), "strategy = \"dgl\"\n"),
        (
            "feature-kd",
            Some("incubator-feature-kd"),
            "strategy = \"feature-kd\"\n[plugins.options]\nhint_weight = 0.5\n",
        ),
        (
            "infopro",
            Some("incubator-infopro"),
            "strategy = \"infopro\"\n[plugins.options]\nlocal_first = 0.5\n",
        ),
        (
            "sequential",
            Some("incubator-sequential"),
            "strategy = \"sequential\"\n",
        ),
        (
            "stitch",
            Some("incubator-stitch"),
            "meta_design = \"thin\"\nstrategy = \"stitched\"\nassembly = \"stitched\"\n[plugins.options]\nmeta_width = 16\nstitch_lr_scale = 2.0\nmodule_frozen_epochs = 1\n",
        ),
        (
            "template",
            Some("incubator-template"),
            "strategy = \"template\"\n",
        ),
    ]
}

/// 256 images in batches of 32: 8 steps per epoch, 2 epochs per stage (the crash tests' and
/// the ranks' run of every strategy).
pub const STRATEGY_RUN: &str = "seed = 3
[model]
embed_dim = 32
depth = 4
num_heads = 2
[split]
divided_depths = [2, 2]
[data]
train_limit = 256
test_limit = 64
[optim]
batch_size = 32
[meta]
epochs = 2
[incubate]
epochs = 2
[finetune]
epochs = 2
warmup_epochs = 1
[e2e]
epochs = 2
";

/// `base` with a strategy's `[plugins]` section (from [`strategies`]), its library added.
pub fn strategy_config(dir: &Path, base: &str, plugin: Option<&str>, plugins: &str) -> String {
    let mut text = format!("{base}[plugins]\n");
    if let Some(lib) = plugin {
        text += &format!("libraries = [{:?}]\n", library(lib).to_str().unwrap());
    }
    text += plugins;
    write_config(dir, &text)
}

/// One short step of the smallest preset.
pub const SMALL_BENCH: &[&str] = &[
    "bench",
    "--presets",
    "mnist-small",
    "--steps",
    "1",
    "--batch",
    "8",
];

/// `incubator ARGS` as `ranks` MPI ranks; `fault`'s environment (`VAR=value`) reaches the one
/// rank it names (Open MPI's MPMD syntax), so a fault can hit one rank.
pub fn mpirun(ranks: usize, args: &[&str], fault: Option<(usize, &str)>) -> Output {
    assert!(
        cfg!(feature = "mpi"),
        "this test binary was built without --features mpi"
    );
    let exe = env!("CARGO_BIN_EXE_incubator");
    let mut cmd = Command::new("mpirun");
    cmd.arg("--oversubscribe");
    let (at, env) = fault.unwrap_or((ranks, ""));
    let blocks = [
        (at, None),
        (1, Some(env)),
        (ranks.saturating_sub(at + 1), None),
    ];
    let mut first = true;
    for (count, env) in blocks {
        if count == 0 || (env.is_some() && at >= ranks) {
            continue;
        }
        if !first {
            cmd.arg(":");
        }
        first = false;
        cmd.args(["-np", &count.to_string()]);
        if let Some(env) = env {
            cmd.args(["-x", env]);
        }
        cmd.arg(exe).args(args);
    }
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun starts (Debian: apt-get install openmpi-bin)")
}

pub const STAGES: [&str; 5] = ["meta", "incubate-0", "incubate-1", "assemble", "e2e"];

/// The stages in an order each can run in (m2mKD's teacher, the E2E model, first), and
/// whether it trains (DGL and InfoPro train no meta model, so there is nothing to kill).
pub fn stages_of(strategy: &str) -> Vec<(&'static str, bool)> {
    match strategy {
        "m2mkd" => vec![
            ("e2e", true),
            ("meta", true),
            ("incubate-0", true),
            ("incubate-1", true),
            ("assemble", true),
        ],
        "dgl" | "infopro" => STAGES.iter().map(|&s| (s, s != "meta")).collect(),
        _ => STAGES.iter().map(|&s| (s, true)).collect(),
    }
}

/// The command-line arguments that train `stage` (`meta`, `incubate-1`, ...) of the run `run`.
pub fn stage_args(stage: &str, cfg: &str, run: &Path) -> Vec<String> {
    let mut args: Vec<String> = match stage.strip_prefix("incubate-") {
        Some(i) => vec!["incubate".into(), "--module".into(), i.into()],
        None => vec![stage.into()],
    };
    for a in ["--no-progress", "-c", cfg, "-d", run.to_str().unwrap()] {
        args.push(a.into());
    }
    args
}

/// The seed of the kill points the crash tests draw (`INCUBATOR_CRASH_SEED` to try others).
pub fn crash_seed() -> u64 {
    std::env::var("INCUBATOR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261130)
}

/// A stand-in for Python in `dir`: it refuses to run anything but a script handed over as
/// `-c` source (`$2`), then runs `body` (a shell snippet answering as the real script would;
/// the script's own arguments from `$3` on).
pub fn stand_in_python(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("python");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = \"-c\" ] || {{ echo \"want the script as -c source, got: $1\" >&2; exit 2; }}\n{body}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `incubator ARGS` with `TMPDIR` an empty folder of `dir`, and what it left there.
pub fn incubator_in_tmpdir(dir: &Path, args: &[&str]) -> (Output, Vec<PathBuf>) {
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(args)
        .env("TMPDIR", &tmp)
        .output()
        .expect("the binary starts");
    let left = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    (out, left)
}
