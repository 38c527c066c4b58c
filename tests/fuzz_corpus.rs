//! Replays every input of the fuzz corpora (`fuzz/corpus/<target>/`, grown by cargo-fuzz and
//! kept in the repository) through the same target bodies (`src/fuzz.rs`): none may panic.
//! Inputs that once crashed a target stay in its corpus, so the fix stays tested.
//!
//! `write_seeds` (ignored) made the first seeds from real files: `cargo test --test
//! fuzz_corpus -- --ignored write_seeds`.

mod common;
use common::*;
use incubator_core::data::{embedded_mnist, idx, Dataset};
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_input_runs_through_its_target_without_a_panic() {
    let mut failures = Vec::new();
    for (name, target) in incubator::fuzz::TARGETS {
        let dir = corpus(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 3,
            "{name}: a corpus of {} inputs",
            files.len()
        );
        for file in &files {
            let data = std::fs::read(file).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
        eprintln!("{name}: {} inputs replayed", files.len());
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}

fn seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn idx_pair(d: &Dataset, gzip: bool) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let (i, l) = (tmp.path().join("i"), tmp.path().join("l"));
    idx::write_idx_images(&i, d, gzip).unwrap();
    idx::write_idx_labels(&l, d, gzip).unwrap();
    let (i, l) = (std::fs::read(i).unwrap(), std::fs::read(l).unwrap());
    let mut out = (i.len() as u16).to_le_bytes().to_vec();
    out.extend(i);
    out.extend(l);
    out
}

#[test]
#[ignore = "writes the first seeds of the corpora; run by hand"]
fn write_seeds() {
    for example in ["tiny", "stitch", "deit-recipe", "fashion-mnist"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{example}.toml"));
        seed("config", example, &std::fs::read(path).unwrap());
    }
    let mnist = embedded_mnist().unwrap();
    let mut few = mnist.train.clone();
    few.truncate(2);
    // 2 images of 28x28 make 1.6 kB; the fuzzer's inputs are at most 4 kB by default
    seed("idx", "two-images", &idx_pair(&few, false));
    seed("idx", "two-images-gzip", &idx_pair(&few, true));
    let small = Dataset::new(vec![7; 3 * 4 * 4], vec![0, 1, 2], 1, 4, 4, 10).unwrap();
    seed("idx", "three-4x4", &idx_pair(&small, false));
    let record = |label: &[u8]| {
        let mut r = label.to_vec();
        r.extend((0..3072).map(|i| (i % 256) as u8));
        r
    };
    seed(
        "cifar",
        "cifar10-one",
        &[&[0u8][..], &record(&[3])].concat(),
    );
    seed(
        "cifar",
        "cifar100-one",
        &[&[1u8][..], &record(&[2, 57])].concat(),
    );
    seed("cifar", "short", &[0u8, 1, 2, 3]);

    // a real run's files: events, a state and a model of the tiny ViT the target loads into
    // (all 64 images trained on: two steps per epoch, so the stop lands mid-epoch)
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "[model]\nimage_size = 28\nembed_dim = 4\ndepth = 1\nnum_heads = 1\n[split]\ndivided_depths = [1]\n[data]\ntrain_limit = 64\ntest_limit = 16\nval_fraction = 0.0\n[e2e]\nepochs = 1\n[checkpoint]\nevery_steps = 1\n",
    );
    let run = tmp.path().join("run");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["e2e", "-c", &cfg, "-d", run.to_str().unwrap()])
        .env("INCUBATOR_CRASH_AT", "term:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    seed(
        "checkpoint",
        "state",
        &std::fs::read(run.join("stages/e2e/state.safetensors")).unwrap(),
    );
    assert_ok(&incubator(&["e2e", "-d", run.to_str().unwrap()]), "e2e");
    seed(
        "checkpoint",
        "model",
        &std::fs::read(run.join("stages/e2e/model.safetensors")).unwrap(),
    );
    seed(
        "checkpoint",
        "empty-header",
        &[8, 0, 0, 0, 0, 0, 0, 0, b'{', b'}'],
    );
    let events = std::fs::read(run.join("events/e2e.jsonl")).unwrap();
    let head: Vec<u8> = events
        .split(|&b| b == b'\n')
        .take(4)
        .collect::<Vec<_>>()
        .join(&b'\n');
    seed("events", "run", &[&head[..], b"\n"].concat());
    seed("events", "torn", &head[..head.len() - 5]);
    seed("events", "nan", br#"{"v":1,"time":1.0,"stage":{"stage":"e2e"},"event":"train_step","step":1,"epoch":0.5,"loss":null,"lr":0.1,"grad_norm":null,"samples_per_sec":1.0}"#);
    seed("tail", "from-start", &[b"\n", &head[..], b"\n"].concat());
    seed(
        "tail",
        "resume",
        &[b"meta=40;e2e=3\n", &head[..], b"\n"].concat(),
    );
    seed("tail", "past-end", b"meta=999999999\n{}\n");
    for (name, req) in [
        ("runs", &b"/api/runs"[..]),
        ("config", b"/api/runs/run/config"),
        ("events", b"/api/runs/run/events\n"),
        ("events-resume", b"/api/runs/run/events\nmeta=90"),
        ("events-from", b"/api/runs/run/events?from=meta%3D90"),
        ("unknown-run", b"/api/runs/nope/events"),
        ("index", b"/"),
        ("escape", b"/../../etc/passwd"),
    ] {
        seed("server", name, req);
    }
}
