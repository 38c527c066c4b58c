//! A stage's budget in optimizer steps (`steps`, here E2E's) and fractional warmups, through
//! the real binary: a run's report says how many E2E steps cost what the method cost, and a
//! baseline trained with that budget does cost it (within one step); its last epoch stops
//! early, is evaluated and checkpointed like any, and a stage killed or stopped inside it
//! resumes to the uninterrupted bytes; settings that cannot train are refused by name.

mod common;
use common::*;
use incubator_core::events::{EvalSplit, Event, StageId};
use incubator_core::telemetry::jsonl::read_events;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

/// 512 images, a tenth held out: 14 steps of 32 per epoch.
const SHORT: &str =
    "[data]\ntrain_limit = 512\ntest_limit = 128\n[meta]\nepochs = 2\n[e2e]\nepochs = 2\n";
const STEPS_PER_EPOCH: u64 = 14;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn e2e_summary(run: &Path) -> Value {
    json(&run.join("stages/e2e/summary.json"))
}

/// The E2E summary's numbers that must not depend on interruptions.
fn outcome(run: &Path) -> Value {
    let mut v = e2e_summary(run);
    for volatile in ["wall_s", "host", "finished_at"] {
        v.as_object_mut().unwrap().remove(volatile);
    }
    v
}

fn e2e(configs: &[&Path], run: &Path, crash_at: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_incubator"));
    cmd.args(["e2e", "--no-progress", "-d", run.to_str().unwrap()]);
    for c in configs {
        cmd.args(["-c", c.to_str().unwrap()]);
    }
    cmd.env_remove("INCUBATOR_CRASH_AT");
    if let Some(at) = crash_at {
        cmd.env("INCUBATOR_CRASH_AT", at);
    }
    cmd.output().unwrap()
}

#[test]
fn an_e2e_step_budget_matches_the_methods_compute_and_resumes_inside_its_short_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = write_config(tmp.path(), TINY);
    let short = tmp.path().join("short.toml");
    std::fs::write(&short, SHORT).unwrap();
    let full = tmp.path().join("full");
    assert_ok(
        &incubator(&[
            "run",
            "--no-progress",
            "-c",
            &tiny,
            "-c",
            short.to_str().unwrap(),
            "-d",
            full.to_str().unwrap(),
        ]),
        "the run whose method sets the budget",
    );
    let report = json(&full.join("report.json"));
    let method_gflop = report["method_gflop"].as_f64().unwrap();
    let n = report["e2e_steps_at_method_compute"].as_u64().unwrap();
    assert_eq!(e2e_summary(&full)["steps"], 2 * STEPS_PER_EPOCH);
    let md = std::fs::read_to_string(full.join("report.md")).unwrap();
    assert!(md.contains(&format!("`e2e.steps = {n}`")), "{md}");
    assert!(
        n % STEPS_PER_EPOCH != 0,
        "the test wants a short last epoch; the method's compute gave {n} steps"
    );

    // That budget, with a warmup of half an epoch (7 steps) and a state every 3 steps.
    let budget = tmp.path().join("budget.toml");
    std::fs::write(
        &budget,
        format!("[e2e]\nsteps = {n}\nwarmup_epochs = 0.5\n[checkpoint]\nevery_steps = 3\n"),
    )
    .unwrap();
    let configs = [Path::new(&tiny), &short, &budget];
    let reference = tmp.path().join("reference");
    assert_ok(&e2e(&configs, &reference, None), "E2E on the step budget");
    let s = e2e_summary(&reference);
    let epochs = n.div_ceil(STEPS_PER_EPOCH);
    assert_eq!(
        (s["steps"].as_u64(), s["epochs"].as_u64()),
        (Some(n), Some(epochs))
    );
    let gflop = s["train_gflop"].as_f64().unwrap();
    let per_step = gflop / n as f64;
    assert!(
        (gflop - method_gflop).abs() <= per_step / 2.0 + 1e-9,
        "E2E {gflop} GFLOP against the method's {method_gflop} (one step: {per_step})"
    );
    let events = read_events(&reference).unwrap();
    let lrs: Vec<(u64, f64)> = events
        .iter()
        .filter_map(|r| match r.event {
            Event::TrainStep { step, lr, .. } => Some((step, lr)),
            _ => None,
        })
        .collect();
    assert_eq!(
        lrs.iter().map(|l| l.0).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "every step once"
    );
    let peak = lrs.iter().map(|l| l.1).fold(0.0, f64::max);
    assert_eq!(lrs[7].1, peak, "7 warmup steps, then the peak");
    assert!(lrs[..8].windows(2).all(|w| w[0].1 < w[1].1));
    assert!(lrs[8..].windows(2).all(|w| w[0].1 > w[1].1));
    let val_epochs: Vec<usize> = events
        .iter()
        .filter_map(|r| match r.event {
            Event::Eval {
                split: EvalSplit::Val,
                epoch,
                ..
            } if r.stage == StageId::E2E => Some(epoch),
            _ => None,
        })
        .collect();
    assert_eq!(
        val_epochs,
        (1..=epochs as usize).collect::<Vec<_>>(),
        "the short last epoch is evaluated like any"
    );

    // Killed inside the short last epoch (after a periodic state), then stopped there by
    // SIGTERM, then finished: the uninterrupted bytes.
    let crashed = tmp.path().join("crashed");
    let kill_at = ((epochs - 1) * STEPS_PER_EPOCH + 2).min(n - 1);
    let out = e2e(&configs, &crashed, Some(&format!("step:{kill_at}")));
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    let out = e2e(&configs, &crashed, Some("term:1"));
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let out = e2e(&configs, &crashed, None);
    assert_ok(&out, "E2E resumed inside its last epoch");
    assert!(
        stderr(&out).contains("resuming at epoch"),
        "{}",
        stderr(&out)
    );
    assert_eq!(outcome(&crashed), outcome(&reference));
    assert!(model_files(&crashed) == model_files(&reference));
}

#[test]
fn warmups_and_step_budgets_that_cannot_train_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = write_config(tmp.path(), TINY);
    let refused = |extra: &str| {
        let layer = tmp.path().join("extra.toml");
        std::fs::write(&layer, extra).unwrap();
        let run = tmp.path().join("run");
        let _ = std::fs::remove_dir_all(&run);
        let out = e2e(&[Path::new(&tiny), &layer], &run, None);
        assert!(!out.status.success(), "{extra} was accepted");
        assert!(
            !run.join("stages/e2e/summary.json").exists(),
            "{extra}: nothing finished"
        );
        stderr(&out)
    };
    let e = refused("[e2e]\nwarmup_epochs = -0.5\n");
    assert!(e.contains("e2e.warmup_epochs = -0.5"), "{e}");
    let e = refused("[meta]\nwarmup_epochs = nan\n");
    assert!(e.contains("meta.warmup_epochs = NaN"), "{e}");
    let e = refused("[incubate]\nwarmup_epochs = 0.5\n[optim]\nschedule = \"deit\"\n");
    assert!(
        e.contains("incubate.warmup_epochs = 0.5") && e.contains("per-step"),
        "{e}"
    );
    let e = refused("[finetune]\nwarmup_epochs = 2.5\nepochs = 2\n");
    assert!(e.contains("must not exceed finetune.epochs = 2"), "{e}");
    // checked once the data gives the steps per epoch: 1.5 epochs of the tiny run's steps
    // are more than a budget of 3
    let e = refused("[e2e]\nsteps = 3\nwarmup_epochs = 1.5\n");
    assert!(
        e.contains("warmup_epochs = 1.5") && e.contains("more than the stage's 3"),
        "{e}"
    );
}
