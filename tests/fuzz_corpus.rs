//! Replays every input of the fuzz corpora (`fuzz/corpus/<target>/`, grown by cargo-fuzz and
//! kept in the repository) through the same target bodies (`src/fuzz.rs`): none may panic.
//! Inputs that once crashed a target stay in its corpus, so the fix stays tested.
//!
//! The seeds (first inputs made from real files: examples, a run's state and events, images as
//! `data folder` writes them) are made again by every run of these tests and replayed; the
//! test fails if one is missing from the corpus. They are written into it only on request:
//! `INCUBATOR_WRITE_FUZZ_SEEDS=1 cargo test --release --test fuzz_corpus` (scripts/fuzz.sh does,
//! before fuzzing), so a test run never rewrites tracked files.

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

/// The targets' scratch folders (the `tail` and `server` targets write files to read back) are
/// gone once the process exits: this test binary runs the replay above again as a child, with
/// the temporary folder an empty one of its own, which must be empty again after it.
#[test]
fn a_process_that_ran_the_targets_leaves_nothing_in_the_temporary_folder() {
    if std::env::var_os("INCUBATOR_FUZZ_CHILD").is_some() {
        return; // the child runs the replay alone
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "every_corpus_input_runs_through_its_target_without_a_panic",
        ])
        .env("TMPDIR", tmp.path())
        .env("INCUBATOR_FUZZ_CHILD", "1")
        .output()
        .unwrap();
    assert_ok(&out, "the replay as a child process");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left in the temporary folder: {left:?}");
}

/// A seed made: (target, file name in its corpus, bytes).
type Seed = (String, String, Vec<u8>);

/// Every seed runs through its target without a panic, and is in the corpus (written there
/// when `INCUBATOR_WRITE_FUZZ_SEEDS` is set).
#[test]
fn the_seeds_run_through_their_targets_and_are_in_the_corpus() {
    let seeds = make_seeds();
    let write = std::env::var_os("INCUBATOR_WRITE_FUZZ_SEEDS").is_some();
    let mut missing = Vec::new();
    for (target, name, bytes) in &seeds {
        let (_, run) = incubator::fuzz::TARGETS
            .iter()
            .find(|(t, _)| t == target)
            .unwrap_or_else(|| panic!("no fuzz target {target}"));
        let ran = std::panic::catch_unwind(|| run(bytes));
        assert!(ran.is_ok(), "seed {target}/{name} panics its target");
        let path = corpus(target).join(name);
        if write {
            std::fs::create_dir_all(corpus(target)).unwrap();
            std::fs::write(&path, bytes).unwrap();
        } else if !path.is_file() {
            missing.push(path.display().to_string());
        }
    }
    assert!(seeds.len() >= 30, "{} seeds", seeds.len());
    assert!(
        missing.is_empty(),
        "seeds missing from the corpus (INCUBATOR_WRITE_FUZZ_SEEDS=1 cargo test --release --test fuzz_corpus writes them): {missing:#?}"
    );
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

/// Makes the seeds.
fn make_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut seed = |target: &str, name: &str, bytes: &[u8]| {
        seeds.push((target.to_string(), format!("seed-{name}"), bytes.to_vec()));
    };
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

    // imports: the fuzz target's tiny ViT in timm's names, then with a NaN, with a position
    // embedding of another width (as many values), and with a tensor timm's ViT has not
    let safetensors = |t: &incubator_core::stages::timm::Tensors| {
        let path = tmp.path().join("t.safetensors");
        incubator_core::checkpoint::save(&path, t, &Default::default()).unwrap();
        std::fs::read(path).unwrap()
    };
    let tiny = incubator::fuzz::tiny_timm_tensors();
    seed("import", "tiny", &safetensors(&tiny));
    let mut nan = tiny.clone();
    nan.get_mut("head.bias").unwrap().1[0] = f32::NAN;
    seed("import", "nan", &safetensors(&nan));
    let mut wide = tiny.clone();
    let (shape, _) = wide.get_mut("pos_embed").unwrap();
    let (tokens, d) = (shape[1], shape[2]);
    *shape = vec![1, tokens / 2, d * 2];
    if tokens % 2 == 0 {
        seed("import", "wide-pos-embed", &safetensors(&wide));
    }
    let mut foreign = tiny.clone();
    foreign.insert("fc_norm.weight".into(), (vec![2], vec![1.0, 1.0]));
    seed("import", "foreign", &safetensors(&foreign));

    // images: PNG of every colour type at 8 bits and two at 16, and a JPEG and a PNG as
    // `data folder` writes them
    for (name, colour, depth, channels) in [
        ("grey", png::ColorType::Grayscale, png::BitDepth::Eight, 1),
        ("rgb", png::ColorType::Rgb, png::BitDepth::Eight, 3),
        (
            "grey-alpha",
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            2,
        ),
        ("rgba", png::ColorType::Rgba, png::BitDepth::Eight, 4),
        (
            "grey16",
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            2,
        ),
        ("rgba16", png::ColorType::Rgba, png::BitDepth::Sixteen, 8),
        ("palette", png::ColorType::Indexed, png::BitDepth::Eight, 1),
    ] {
        let (w, h) = (5u32, 3u32);
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, w, h);
            enc.set_color(colour);
            enc.set_depth(depth);
            if colour == png::ColorType::Indexed {
                enc.set_palette(vec![0, 0, 0, 255, 0, 0, 0, 255, 0]);
            }
            let pixels: Vec<u8> = (0..w * h * channels).map(|i| (i % 3) as u8 * 60).collect();
            enc.write_header()
                .unwrap()
                .write_image_data(&pixels)
                .unwrap();
        }
        seed("image", &format!("{name}.png"), &bytes);
    }
    let folder = tmp.path().join("folder");
    for format in ["jpeg", "png"] {
        let out = folder.join(format);
        assert_ok(
            &incubator(&[
                "data",
                "folder",
                "embedded-mnist",
                "--out",
                out.to_str().unwrap(),
                "--format",
                format,
                "--side",
                "12",
                "--train-limit",
                "1",
                "--test-limit",
                "1",
            ]),
            "data folder",
        );
        let class = std::fs::read_dir(out.join("train"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| std::fs::read_dir(p).unwrap().next().is_some())
            .unwrap();
        let file = std::fs::read_dir(class)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        seed(
            "image",
            &format!("mnist-12.{format}"),
            &std::fs::read(file).unwrap(),
        );
    }
    seeds
}
