//! `incubator sweep` through the real binary: a tiny grid x 2 seeds, its report's statistics
//! recomputed here from the runs' own summaries; resuming after failed and interrupted runs
//! ends with the same numbers as an undisturbed sweep; a changed sweep is refused.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Two learning rates x seeds 0 and 1 on the tiny model, one epoch per method stage.
fn spec(dir: &Path, name: &str, extra_set: &str) -> PathBuf {
    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tiny.toml");
    let text = format!(
        r#"[sweep]
title = "tiny"
configs = ["{tiny}"]
seeds = [0, 1]

[sweep.set]
"data.train_limit" = 256
"data.test_limit" = 128
"meta.epochs" = 1
"meta.warmup_epochs" = 0
"incubate.epochs" = 1
"incubate.warmup_epochs" = 0
"finetune.epochs" = 1
"e2e.warmup_epochs" = 0
{extra_set}

[grid]
"optim.base_lr" = [0.032, 0.064]
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const E2E3: &str = "\"e2e.epochs\" = 3";
const POINTS: [&str; 2] = ["optim.base_lr=0.032", "optim.base_lr=0.064"];

fn sweep(args: &[&str]) -> std::process::Output {
    incubator(&[&["sweep"], args].concat())
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn summary(run: &Path, stage: &str) -> Value {
    json(&run.join("stages").join(stage).join("summary.json"))
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn sd(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

fn close(a: &Value, b: f64, what: &str) {
    let a = a.as_f64().unwrap_or_else(|| panic!("{what}: {a}"));
    assert!((a - b).abs() < 1e-12, "{what}: report {a}, recomputed {b}");
}

/// Each finished run's numbers that do not depend on timing, by (point, seed).
fn results(dir: &Path) -> Vec<(String, u64, f64, f64, f64, f64, f64)> {
    json(&dir.join("report.json"))["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["point"].as_str().unwrap().to_string(),
                r["seed"].as_u64().unwrap(),
                r["assembled_top1"].as_f64().unwrap(),
                r["assembled_top5"].as_f64().unwrap(),
                r["e2e"]["top1"].as_f64().unwrap(),
                r["e2e"]["top5"].as_f64().unwrap(),
                r["method_gflop"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The sweep directory as one TensorBoard logdir, asked through TensorBoard's own server: every
/// stage of every run is a run with the same tags, and an HParams session whose settings say
/// which configuration and stage it is and whose metrics hold its final top-1.
fn tensorboard_sees_the_sweep(dir: &Path) {
    let tb = python_json(
        "INCUBATOR_TB_PYTHON",
        "tensorboard_reader.py",
        &["--http".as_ref(), dir.as_os_str()],
    );
    let runs = tb["runs"].as_array().unwrap();
    // 2 configurations x 2 seeds x (meta, 4 incubations, assemble, e2e)
    assert_eq!(runs.len(), 2 * 2 * 7, "{runs:?}");
    let run = "runs/optim.base_lr=0.064/seed1/tensorboard/assemble";
    assert!(runs.contains(&Value::from(run)), "{runs:?}");
    for stage in ["assemble", "e2e"] {
        let r = format!("runs/optim.base_lr=0.032/seed0/tensorboard/{stage}");
        let tags = tb["tags"][&r].as_array().unwrap();
        // per epoch on the validation split, the test split once, each under its own group
        for tag in [
            "val/top1",
            "test/top1",
            "final/test_top1",
            "final/best_val_top1",
        ] {
            assert!(tags.contains(&Value::from(tag)), "{r}: {tag} in {tags:?}");
        }
    }
    let sessions = tb["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), runs.len(), "a session per stage");
    let s = sessions
        .iter()
        .find(|s| s["name"] == run)
        .expect("the assembly's session");
    assert_eq!(s["hparams"]["optim.base_lr"], 0.064);
    assert_eq!(s["hparams"]["seed"], 1.0);
    assert_eq!(s["hparams"]["stage"], "assemble");
    let top1 = summary(&dir.join("runs/optim.base_lr=0.064/seed1"), "assemble")["top1"]
        .as_f64()
        .unwrap();
    let shown = s["metrics"][":final/test_top1"].as_f64().unwrap();
    assert!(
        (shown - top1).abs() < 1e-6,
        "TensorBoard {shown}, summary {top1}"
    );
}

#[test]
fn sweep_report_statistics_match_the_runs_and_a_rerun_trains_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = spec(tmp.path(), "sweep.toml", E2E3);
    let dir = tmp.path().join("sw");
    let (f, d) = (file.to_str().unwrap(), dir.to_str().unwrap());
    let out = sweep(&["run", f, "-d", d, "--jobs", "2"]);
    assert_ok(&out, "sweep run");

    let report = json(&dir.join("report.json"));
    let points = report["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert!(report["missing"].as_array().unwrap().is_empty());
    // Student's t, two-sided 95%, one degree of freedom (any t table)
    let t = 12.706204736174705;
    for (p, name) in points.iter().zip(POINTS) {
        assert_eq!(p["point"]["name"], name);
        let runs: Vec<PathBuf> = [0, 1]
            .iter()
            .map(|s| dir.join("runs").join(name).join(format!("seed{s}")))
            .collect();
        let col = |stage: &str, key: &str| -> Vec<f64> {
            runs.iter()
                .map(|r| summary(r, stage)[key].as_f64().unwrap())
                .collect()
        };
        for (k, key) in [("top1", "top1"), ("top5", "top5")] {
            let a = col("assemble", key);
            let e = col("e2e", key);
            close(
                &p[format!("assembled_{k}")]["mean"],
                mean(&a),
                "assembled mean",
            );
            close(&p[format!("assembled_{k}")]["sd"], sd(&a), "assembled sd");
            close(&p[format!("e2e_{k}")]["mean"], mean(&e), "e2e mean");
            close(&p[format!("e2e_{k}")]["sd"], sd(&e), "e2e sd");
            let diff: Vec<f64> = a.iter().zip(&e).map(|(a, e)| a - e).collect();
            let half = t * sd(&diff) / 2f64.sqrt();
            let d = &p[format!("diff_{k}")];
            close(&d["mean"], mean(&diff), "difference");
            close(&d["lo"], mean(&diff) - half, "interval low");
            close(&d["hi"], mean(&diff) + half, "interval high");
        }
        // the method's compute: meta, the four incubations and the fine-tune
        let method: Vec<f64> = runs
            .iter()
            .map(|r| {
                [
                    "meta",
                    "incubate-0",
                    "incubate-1",
                    "incubate-2",
                    "incubate-3",
                    "assemble",
                ]
                .iter()
                .map(|s| summary(r, s)["train_gflop"].as_f64().unwrap())
                .sum()
            })
            .collect();
        close(&p["method_gflop"]["mean"], mean(&method), "method compute");
        close(
            &p["e2e_gflop"]["mean"],
            mean(&col("e2e", "train_gflop")),
            "E2E compute",
        );
        // the stacked modules before the fine-tune (DGL's and InfoPro's protocol): their own
        // test top-1, paired with the same E2E runs, the fine-tune's compute left out
        let stacked: Vec<f64> = runs
            .iter()
            .map(|r| {
                summary(r, "assemble")["stacked"]["test"]["top1"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        let w = &p["without_finetune"];
        close(&w["assembled_top1"]["mean"], mean(&stacked), "stacked mean");
        let e = col("e2e", "top1");
        let diff: Vec<f64> = stacked.iter().zip(&e).map(|(a, e)| a - e).collect();
        close(&w["diff_top1"]["mean"], mean(&diff), "stacked difference");
        let ft = col("assemble", "train_gflop");
        close(
            &w["method_gflop"]["mean"],
            mean(&method) - mean(&ft),
            "stacked compute",
        );
        // the last epoch's training loss beside the accuracy: the fine-tune's and E2E's
        for (key, stage) in [
            ("assembled_train_loss", "assemble"),
            ("e2e_train_loss", "e2e"),
        ] {
            let l = col(stage, "final_train_loss");
            close(&p[key]["mean"], mean(&l), key);
            close(&p[key]["sd"], sd(&l), key);
        }
    }
    // How the difference changes along the one axis: the last point's paired differences
    // against the first's, by Welch's t (unpaired: the points' runs share only seed numbers).
    let diffs = |name: &str| -> Vec<f64> {
        [0, 1]
            .iter()
            .map(|s| {
                let r = dir.join("runs").join(name).join(format!("seed{s}"));
                summary(&r, "assemble")["top1"].as_f64().unwrap()
                    - summary(&r, "e2e")["top1"].as_f64().unwrap()
            })
            .collect()
    };
    let (last, first) = (diffs(POINTS[1]), diffs(POINTS[0]));
    let (va, vb) = (sd(&last).powi(2) / 2.0, sd(&first).powi(2) / 2.0);
    let df = (va + vb).powi(2) / (va * va + vb * vb); // n - 1 = 1 for both
    let half = incubator_compare::t_quantile(0.975, df) * (va + vb).sqrt();
    let change = &report["change"];
    assert_eq!(
        (&change["from"], &change["to"]),
        (&POINTS[0].into(), &POINTS[1].into())
    );
    close(
        &change["diff"]["mean"],
        mean(&last) - mean(&first),
        "change",
    );
    close(
        &change["diff"]["hi"],
        mean(&last) - mean(&first) + half,
        "change interval",
    );
    // 2 points x (top-1, top-5, stacked top-1) and the change: 7 intervals, each held to
    // 1 - 0.05 / 7 for the report to hold at 95%
    assert_eq!(report["looks"]["intervals"], 7);
    close(
        &report["looks"]["level"],
        1.0 - 0.05 / 7.0,
        "Bonferroni level",
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let first = &points[0]["assembled_top1"];
    let shown = format!(
        "{:.2} ± {:.2}",
        100.0 * first["mean"].as_f64().unwrap(),
        100.0 * first["sd"].as_f64().unwrap()
    );
    assert!(md.contains(&shown), "{shown} not in\n{md}");
    assert!(
        md.contains("### The stacked modules without fine-tuning"),
        "{md}"
    );
    assert!(
        md.contains("This report gives 7 intervals at 95%")
            && md.contains("Welch's t")
            && md.contains("| final train loss method / E2E |"),
        "{md}"
    );
    for plot in ["accuracy-vs-compute.svg", "accuracy-vs-axis.svg"] {
        let svg = std::fs::read_to_string(dir.join("plots").join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{plot}"
        );
        // a dot per configuration and method, plus the legend's two
        assert_eq!(svg.matches("<circle").count(), 2 * 2 + 2, "{plot}");
    }
    assert!(md.contains("plots/accuracy-vs-axis.svg"));
    tensorboard_sees_the_sweep(&dir);

    // Again: every run is finished, nothing trains, the numbers stay.
    let before = results(&dir);
    let again = sweep(&["run", f, "-d", d]);
    assert_ok(&again, "sweep run again");
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(said.contains("4 runs, 4 finished, 0 to train"), "{said}");
    assert_eq!(results(&dir), before);

    // The report alone reads the same runs.
    std::fs::remove_file(dir.join("report.json")).unwrap();
    assert_ok(&sweep(&["report", "-d", d]), "sweep report");
    assert_eq!(results(&dir), before);

    // A sweep file that now gives those runs another config is refused, naming them.
    let changed = spec(tmp.path(), "changed.toml", "\"e2e.epochs\" = 4");
    let refused = sweep(&["run", changed.to_str().unwrap(), "-d", d]);
    assert!(!refused.status.success());
    let e = stderr(&refused);
    assert!(
        e.contains("made with another config") && e.contains("optim.base_lr=0.064/seed1"),
        "{e}"
    );

    // A key no config has is refused before anything trains.
    let typo = tmp.path().join("typo.toml");
    std::fs::write(
        &typo,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("optim.base_lr", "optim.base_rl"),
    )
    .unwrap();
    let fresh = tmp.path().join("typo-dir");
    let refused = sweep(&["run", typo.to_str().unwrap(), "-d", fresh.to_str().unwrap()]);
    let e = stderr(&refused);
    assert!(e.contains("unknown key `optim.base_rl`"), "{e}");
    assert!(!fresh.join("runs").exists());

    // Failed runs (each stops itself after its 3rd step) leave the others going; the same
    // command afterwards resumes them to the numbers of the undisturbed sweep.
    let broken = tmp.path().join("broken");
    let b = broken.to_str().unwrap();
    let failed = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["sweep", "run", f, "-d", b, "--jobs", "2"])
        .env("INCUBATOR_CRASH_AT", "term:3")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let e = stderr(&failed);
    assert!(
        e.contains("4 of 4 runs failed") && e.contains("run the same command again"),
        "{e}"
    );
    assert!(String::from_utf8_lossy(&failed.stdout).contains("FAILED"));
    let resumed = sweep(&["run", f, "-d", b, "--jobs", "2"]);
    assert_ok(&resumed, "resumed sweep");
    let log =
        std::fs::read_to_string(broken.join("logs").join(POINTS[0]).join("seed0.log")).unwrap();
    assert!(log.contains("resuming at epoch 1 step 3"), "{log}");
    assert_eq!(results(&broken), results(&dir));
}

#[test]
fn a_signal_to_the_sweep_stops_its_runs_with_their_state_saved() {
    let tmp = tempfile::tempdir().unwrap();
    // a long E2E so that the signal finds a run training
    let file = spec(tmp.path(), "long.toml", "\"e2e.epochs\" = 200");
    let dir = tmp.path().join("sw");
    let child = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args([
            "sweep",
            "run",
            file.to_str().unwrap(),
            "-d",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = dir.join("logs").join(POINTS[0]).join("seed0.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("[e2e] epoch 2/200")
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no E2E epoch in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("SIGTERM: stopped the sweep") && e.contains("resumes"),
        "{e}"
    );
    // the run got the signal too, saved its state and stopped
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("SIGTERM"), "{text}");
    let run = dir.join("runs").join(POINTS[0]).join("seed0");
    let events = std::fs::read_to_string(run.join("events/e2e.jsonl")).unwrap();
    assert!(events.contains("stage_interrupted"), "{events}");
    assert!(run.join("stages/e2e/state.safetensors").exists());
    assert!(!run.join("stages/e2e/summary.json").exists());
    // and the child is gone: nothing writes to its log any more
    let len = std::fs::metadata(&log).unwrap().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(std::fs::metadata(&log).unwrap().len(), len);
}

/// A configuration without its own E2E runs (a strategy among several) is compared with the
/// baseline configuration's E2E run of the same seed.
#[test]
fn runs_without_a_baseline_of_their_own_are_paired_with_the_named_ones_of_the_same_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tiny.toml");
    let file = tmp.path().join("s.toml");
    std::fs::write(
        &file,
        format!(
            r#"[sweep]
configs = ["{tiny}"]
seeds = [0, 1]
baseline = "v=a"
[sweep.set]
"data.train_limit" = 256
"data.test_limit" = 128
"meta.epochs" = 1
"incubate.epochs" = 1
"finetune.epochs" = 1
"e2e.epochs" = 2
[[grid.v]]
label = "a"
[[grid.v]]
label = "b"
"e2e.enabled" = false
"finetune.epochs" = 2
"#
        ),
    )
    .unwrap();
    let dir = tmp.path().join("sw");
    assert_ok(
        &sweep(&[
            "run",
            file.to_str().unwrap(),
            "-d",
            dir.to_str().unwrap(),
            "--jobs",
            "2",
        ]),
        "sweep",
    );
    assert!(
        !dir.join("runs/v=b/seed0/stages/e2e/summary.json").exists(),
        "b trains no E2E"
    );
    let report = json(&dir.join("report.json"));
    let b = &report["points"][1];
    assert_eq!(b["point"]["name"], "v=b");
    let diffs: Vec<f64> = [0, 1]
        .iter()
        .map(|s| {
            summary(&dir.join(format!("runs/v=b/seed{s}")), "assemble")["top1"]
                .as_f64()
                .unwrap()
                - summary(&dir.join(format!("runs/v=a/seed{s}")), "e2e")["top1"]
                    .as_f64()
                    .unwrap()
        })
        .collect();
    close(&b["diff_top1"]["mean"], mean(&diffs), "paired with a's E2E");
    for run in report["runs"].as_array().unwrap() {
        let from = if run["point"] == "v=b" {
            serde_json::json!("v=a")
        } else {
            Value::Null
        };
        assert_eq!(run["e2e_from"], from, "{run}");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("compared with the E2E run of `v=a` of the same seed"),
        "{md}"
    );
}

/// The pid in a held stage lock's record (`RUN/stages/<stage>/lock`), once it has one.
fn stage_holder(run: &Path, stage: &str) -> Option<i32> {
    let text = std::fs::read_to_string(run.join("stages").join(stage).join("lock")).ok()?;
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

fn alive(pid: i32) -> bool {
    // a zombie has no /proc/PID/stat state other than Z; it trains nothing
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGKILL gives the sweep no chance to stop its runs: the kernel does it (each run gets SIGTERM,
/// saves its state and stops). A sweep started while an earlier run still has its directory
/// open waits for it instead of starting a second writer that fails.
#[test]
fn a_killed_sweep_takes_its_runs_with_it_and_a_restart_waits_for_a_live_one() {
    let tmp = tempfile::tempdir().unwrap();
    let file = spec(tmp.path(), "long.toml", "\"e2e.epochs\" = 20000");
    let dir = tmp.path().join("sw");
    let args = [
        "sweep",
        "run",
        file.to_str().unwrap(),
        "-d",
        dir.to_str().unwrap(),
        "--jobs",
        "1",
    ];
    let mut sweep_process = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = dir.join("runs").join(POINTS[0]).join("seed0");
    let log = dir.join("logs").join(POINTS[0]).join("seed0.log");
    wait_for("no E2E epoch", 300, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("[e2e] epoch 2/20000")
    });
    let child = stage_holder(&run, "e2e").expect("the run holds its stage");
    sweep_process.kill().unwrap();
    sweep_process.wait().unwrap();
    wait_for("the run outlived its killed sweep", 60, || !alive(child));
    let events = std::fs::read_to_string(run.join("events/e2e.jsonl")).unwrap();
    assert!(events.contains("stage_interrupted"), "{events}");
    assert!(run.join("stages/e2e/state.safetensors").exists());

    // A live process on the first run (here one started by hand, as a run of an earlier
    // sweep still saving its state would be): the restarted sweep waits, then resumes it.
    let config = dir.join("configs").join(POINTS[0]).join("seed0.toml");
    let mut holder = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["run", "--no-progress", "-c"])
        .arg(&config)
        .arg("-d")
        .arg(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the hand-started run holds no stage", 300, || {
        stage_holder(&run, "e2e") == Some(holder.id() as i32)
    });
    let out_path = tmp.path().join("restart.out");
    let mut restarted = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = || std::fs::read_to_string(&out_path).unwrap_or_default();
    wait_for("the sweep does not say it waits", 60, || {
        out().contains("waiting")
    });
    let said = out();
    assert!(
        said.contains(&format!("pid {}", holder.id())) && said.contains(&run.display().to_string()),
        "{said}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!out().contains("started"), "{}", out());
    unsafe { libc::kill(holder.id() as i32, libc::SIGTERM) };
    holder.wait().unwrap();
    wait_for("the sweep does not start the run once free", 60, || {
        out().contains(&format!("started  {} seed 0", POINTS[0]))
    });
    wait_for("the resumed run does not train", 300, || {
        stage_holder(&run, "e2e").is_some_and(|p| p != holder.id() as i32)
    });
    unsafe { libc::kill(restarted.id() as i32, libc::SIGTERM) };
    restarted.wait().unwrap();
    let said = out();
    assert!(!said.contains("FAILED"), "{said}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("resuming at epoch"), "{text}");
}
