//! The validation split through the real binary: with it (the default), every stage evaluates
//! the validation split after each epoch and the test split once, at its end (the assembly
//! stage once more, for the stacked modules before fine-tuning), and every number says its
//! split; without it, every epoch is evaluated on the test split; a run made before
//! validation splits existed keeps evaluating on the test split; bad settings are refused.

mod common;
use common::*;
use incubator_core::events::{EvalSplit, Event, StageId, StageKind};
use incubator_core::telemetry::jsonl::read_events;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The tiny run, shorter: every stage a few epochs on 512 images.
const SHORT: &str =
    "[data]\ntrain_limit = 512\ntest_limit = 128\n[meta]\nepochs = 2\n[e2e]\nepochs = 2\n";

/// (stage, split) -> the epochs of its evaluations, in order.
fn evaluations(run: &Path) -> BTreeMap<(StageId, EvalSplit), Vec<usize>> {
    let mut out: BTreeMap<(StageId, EvalSplit), Vec<usize>> = BTreeMap::new();
    for r in read_events(run).unwrap() {
        if let Event::Eval { split, epoch, .. } = r.event {
            out.entry((r.stage, split)).or_default().push(epoch);
        }
    }
    out
}

fn summary(run: &Path, stage: StageId) -> Value {
    let path = run.join("stages").join(stage.slug()).join("summary.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `incubator run` on the config files `layers`, laid over each other, into `run`.
fn run_with(layers: &[&Path], run: &Path, what: &str) {
    let mut args = vec!["run".to_string(), "--no-progress".into()];
    for l in layers {
        args.extend(["-c".to_string(), l.display().to_string()]);
    }
    args.extend(["-d".to_string(), run.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_ok(&incubator(&args), what);
}

fn stages() -> Vec<StageId> {
    let mut s = vec![StageId::META];
    s.extend((0..4).map(StageId::incubate));
    s.extend([StageId::ASSEMBLE, StageId::E2E]);
    s
}

#[test]
fn with_a_validation_split_the_test_split_is_read_once_per_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let (tiny, short) = (
        write_config(tmp.path(), TINY),
        tmp.path().join("short.toml"),
    );
    std::fs::write(&short, SHORT).unwrap();
    let run = tmp.path().join("val");
    let tiny = Path::new(&tiny);
    run_with(
        &[tiny, &short],
        &run,
        "incubator run with the default validation split",
    );
    let evals = evaluations(&run);
    for id in stages() {
        let s = summary(&run, id);
        let epochs = s["epochs"].as_u64().unwrap() as usize;
        let per_epoch: Vec<usize> = (1..=epochs).collect();
        assert_eq!(
            evals[&(id, EvalSplit::Val)].len(),
            epochs + (id == StageId::ASSEMBLE) as usize
        );
        let test = &evals[&(id, EvalSplit::Test)];
        if id.stage == StageKind::Assemble {
            // the stacked modules (epoch 0) and the fine-tuned model: two models, one read each
            assert_eq!(test, &vec![0, epochs], "{id}");
            assert_eq!(evals[&(id, EvalSplit::Val)][1..], per_epoch[..]);
            let stacked = &s["stacked"];
            assert!(stacked["test"]["top1"].as_f64().unwrap() > 0.0, "{s}");
            assert!(stacked["val"]["top1"].is_number(), "{s}");
        } else {
            assert_eq!(test, &vec![epochs], "{id}: the test split once, at the end");
            assert_eq!(evals[&(id, EvalSplit::Val)], per_epoch, "{id}");
        }
        assert_eq!(s["best_split"], "val", "{id}");
        assert!(s["val"]["top1"].is_number(), "{id}: {s}");
        // the stage's result is the test split's
        let last_test = read_events(&run)
            .unwrap()
            .into_iter()
            .filter(|r| r.stage == id)
            .filter_map(|r| match r.event {
                Event::Eval {
                    split: EvalSplit::Test,
                    epoch,
                    top1,
                    ..
                } if epoch == epochs => Some(top1),
                _ => None,
            })
            .last()
            .unwrap();
        assert_eq!(s["top1"].as_f64().unwrap(), last_test, "{id}");
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("test split, evaluated once")
            && report.contains("| val top-1 (%) | best val top-1 (%) (epoch) |")
            && report.contains("Stacked modules, no fine-tune"),
        "{report}"
    );
    let json: Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["per_epoch_split"], "val");
    assert!(json["without_finetune"]["assembled_top1"].is_number());

    // without a validation split, every epoch on the test split; the images are all trained on
    let plain = tmp.path().join("plain");
    let off = tmp.path().join("off.toml");
    std::fs::write(&off, "[data]\nval_fraction = 0.0\n").unwrap();
    run_with(
        &[tiny, &short, &off],
        &plain,
        "incubator run without a validation split",
    );
    let evals = evaluations(&plain);
    for id in stages() {
        let s = summary(&plain, id);
        let epochs = s["epochs"].as_u64().unwrap() as usize;
        let mut want: Vec<usize> = (1..=epochs).collect();
        if id == StageId::ASSEMBLE {
            want.insert(0, 0);
        }
        assert_eq!(evals[&(id, EvalSplit::Test)], want, "{id}");
        assert!(!evals.contains_key(&(id, EvalSplit::Val)), "{id}");
        assert_eq!(s["best_split"], "test");
        assert!(s.get("val").is_none(), "{s}");
    }
    let report = std::fs::read_to_string(plain.join("report.md")).unwrap();
    assert!(report.contains("holds out no validation split"), "{report}");
    let steps = |run: &Path| {
        read_events(run)
            .unwrap()
            .into_iter()
            .find_map(|r| match r.event {
                Event::StageStarted {
                    steps_per_epoch, ..
                } if r.stage == StageId::E2E => Some(steps_per_epoch),
                _ => None,
            })
            .unwrap()
    };
    // 512 images: 16 batches of 32; a tenth held out leaves 14
    assert_eq!((steps(&plain), steps(&run)), (16, 14));
}

#[test]
fn a_run_made_before_validation_splits_keeps_evaluating_on_the_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = write_config(tmp.path(), TINY);
    let run = tmp.path().join("old");
    let r = run.to_str().unwrap();
    // a config.toml as older versions wrote it: no val_fraction, no val_per_class
    std::fs::create_dir_all(&run).unwrap();
    let cfg = incubator_core::config::RunConfig::load(Path::new(&tiny)).unwrap();
    let old: String = cfg
        .to_toml()
        .lines()
        .filter(|l| !l.starts_with("val_fraction") && !l.starts_with("val_per_class"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!old.contains("val_"), "{old}");
    assert!(
        old.contains("epochs = 8\n"),
        "the tiny example's E2E epochs: {old}"
    );
    std::fs::write(
        run.join("config.toml"),
        with_keys(&old, &[("e2e.epochs", "1")]),
    )
    .unwrap();
    assert_ok(
        &incubator(&["e2e", "--no-progress", "-d", r]),
        "e2e of an old run",
    );
    let s = summary(&run, StageId::E2E);
    assert_eq!(s["best_split"], "test", "{s}");
    assert!(s.get("val").is_none());
    // and the default config, given explicitly, is refused: it holds out a validation split
    let e = stderr(&incubator(&["e2e", "-c", &tiny, "-d", r]));
    assert!(e.contains("data.val_fraction"), "{e}");
}

#[test]
fn validation_settings_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = write_config(tmp.path(), TINY);
    let bad = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        let run = tmp.path().join(format!("run-{name}"));
        let out = incubator(&[
            "meta",
            "-c",
            &tiny,
            "-c",
            p.to_str().unwrap(),
            "-d",
            run.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        (stderr(&out), run)
    };
    let (e, run) = bad(
        "both.toml",
        "[data]\nval_fraction = 0.2\nval_per_class = 5\n",
    );
    assert!(
        e.contains("data.val_per_class") && e.contains("set only one"),
        "{e}"
    );
    assert!(!run.exists(), "a refused config leaves nothing");
    let (e, _) = bad("one.toml", "[data]\nval_fraction = 1.0\n");
    assert!(
        e.contains("data.val_fraction = 1") && e.contains("[0, 1)"),
        "{e}"
    );
    let (e, _) = bad("nan.toml", "[data]\nval_fraction = nan\n");
    assert!(e.contains("data.val_fraction"), "{e}");
    // the first five MNIST images are five different digits: no class can spare one
    let (e, _) = bad(
        "empty.toml",
        "[data]\ntrain_limit = 5\n[optim]\nbatch_size = 1\n",
    );
    assert!(
        e.contains("validation split") && e.contains("is empty") && e.contains("val_fraction = 0"),
        "{e}"
    );
    // grey images cannot take ImageNet's three channel statistics
    let (e, _) = bad("norm.toml", "[data]\nnormalize = \"imagenet\"\n");
    assert!(e.contains("data.normalize"), "{e}");
}
