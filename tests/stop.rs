//! Stopping and sharing a run directory safely, on the real binary: SIGTERM from outside ends
//! a stage after its step with its state saved and `incubator run` too; a second signal ends
//! the process at once; a second process on a running stage is refused and a dead holder's
//! lock is taken over; a full disk fails a stage with the last good state kept.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// 1024 images, 28 steps per epoch (a tenth held out for validation).
const SMALL: &str = "seed = 5
[model]
embed_dim = 32
depth = 4
num_heads = 2
[split]
divided_depths = [2, 2]
[data]
train_limit = 1024
test_limit = 64
[meta]
epochs = 1
[incubate]
epochs = 1
[finetune]
epochs = 1
[e2e]
epochs = 2
";

/// Steps of a second or so: time enough to act while one runs.
const SLOW: &str = "seed = 5
[model]
preset = \"vit-tiny\"
patch_size = 4
[split]
divided_depths = [3, 3, 3, 3]
[data]
train_limit = 2048
test_limit = 64
[optim]
batch_size = 64
[e2e]
epochs = 1
";

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The baseline stage of `cfg` in `run`, running in the background.
fn spawn_e2e(cfg: &str, run: &Path) -> Child {
    spawn(&[
        "e2e",
        "--no-progress",
        "-c",
        cfg,
        "-d",
        run.to_str().unwrap(),
    ])
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig}");
}

/// Waits until the stage's event file has `n` train steps.
fn wait_for_steps(run: &Path, stage: &str, n: usize) {
    let file = run.join("events").join(format!("{stage}.jsonl"));
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.matches("\"train_step\"").count() >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{stage} took no {n} steps in 2 min"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn finish(child: Child) -> std::process::Output {
    child.wait_with_output().unwrap()
}

#[test]
fn sigterm_from_outside_saves_the_step_and_the_rerun_ends_with_the_uninterrupted_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), SMALL);
    let reference = uninterrupted_e2e(&cfg, tmp.path());

    let run = tmp.path().join("stopped");
    let child = spawn_e2e(&cfg, &run);
    wait_for_steps(&run, "e2e", 3);
    // Frozen while both signals are sent, so the stop lands in the middle of the epoch.
    signal(&child, "STOP");
    signal(&child, "TERM");
    signal(&child, "CONT");
    let out = finish(child);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("e2e stopped by SIGTERM at epoch 1 step")
            && e.contains("its state is saved in")
            && e.contains("Run the same command again to resume"),
        "{e}"
    );
    // a deliberate stop is not an error
    assert!(
        !e.contains("error:") && !e.contains("failed") && e.contains("stage e2e stopped"),
        "{e}"
    );
    assert!(!run.join("stages/e2e/summary.json").exists());

    resumes_to_the_reference(&run, &reference, "resuming at epoch 1 step");
}

#[test]
fn sigterm_during_an_evaluation_stops_the_stage_and_the_rerun_ends_with_the_uninterrupted_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), SMALL);
    let reference = uninterrupted_e2e(&cfg, tmp.path());
    // 102 validation images (4 batches) after each of 2 epochs, then the 64 test images (2):
    // batch 2 is inside epoch 1's evaluation, batch 9 inside the final test evaluation
    for (batch, resuming) in [
        (2, "resuming at epoch 1 step 28/28"),
        (9, "resuming at epoch 3 step 0/28"),
    ] {
        let run = tmp.path().join(format!("stopped-{batch}"));
        let out = Command::new(env!("CARGO_BIN_EXE_incubator"))
            .args(["e2e", "-c", &cfg, "-d", run.to_str().unwrap()])
            .env("INCUBATOR_CRASH_AT", format!("eval:{batch}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
        let e = stderr(&out);
        assert!(
            e.contains("stopped by SIGTERM")
                && e.contains("stage e2e stopped")
                && !e.contains("error:"),
            "{e}"
        );
        assert!(!run.join("stages/e2e/summary.json").exists());
        resumes_to_the_reference(&run, &reference, resuming);
        let top1 = |r: &Path| {
            let s: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(r.join("stages/e2e/summary.json")).unwrap(),
            )
            .unwrap();
            (s["top1"].clone(), s["val"].clone())
        };
        assert_eq!(
            top1(&run),
            top1(&reference),
            "stopped at eval batch {batch}"
        );
    }
}

#[test]
fn sigterm_while_an_image_folder_is_listed_stops_at_once_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("folder");
    for split in ["train", "val"] {
        for class in ["a", "b"] {
            let dir = data.join(split).join(class).join("deeper");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("0.png"), b"").unwrap();
        }
    }
    let cfg = write_config(
        tmp.path(),
        &format!(
            "[data]\ndataset = \"folder\"\npath = {:?}\nimage_size = 16\n",
            data
        ),
    );
    let run = tmp.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["meta", "-c", &cfg, "-d", run.to_str().unwrap()])
        .env("INCUBATOR_CRASH_AT", "list:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("stopped by SIGTERM while listing") && !e.contains("error:"),
        "{e}"
    );
    assert!(!run.exists(), "a stop while listing left {}", run.display());
}

/// The baseline of `cfg` trained without interruption in `dir/reference`.
fn uninterrupted_e2e(cfg: &str, dir: &Path) -> std::path::PathBuf {
    let reference = dir.join("reference");
    assert_ok(
        &incubator(&["e2e", "-c", cfg, "-d", reference.to_str().unwrap()]),
        "uninterrupted e2e",
    );
    reference
}

/// Runs the baseline in `run` again: it must resume (saying `resuming`) and end with the
/// model of `reference`.
fn resumes_to_the_reference(run: &Path, reference: &Path, resuming: &str) {
    let out = incubator(&["e2e", "-d", run.to_str().unwrap()]);
    assert_ok(&out, "resumed e2e");
    assert!(stderr(&out).contains(resuming), "{}", stderr(&out));
    assert!(
        std::fs::read(run.join("stages/e2e/model.safetensors")).unwrap()
            == std::fs::read(reference.join("stages/e2e/model.safetensors")).unwrap(),
        "the resumed baseline equals the uninterrupted one"
    );
}

#[test]
fn sigterm_stops_every_stage_of_a_whole_run_and_the_rerun_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), SMALL);
    let reference = tmp.path().join("reference");
    assert_ok(
        &incubator(&[
            "run",
            "--jobs",
            "2",
            "-c",
            &cfg,
            "-d",
            reference.to_str().unwrap(),
        ]),
        "uninterrupted run",
    );
    let run = tmp.path().join("stopped");
    // SIGTERM after the 40th step of the process (the meta model and the baseline run side by
    // side from the start).
    let out = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args([
            "run",
            "--jobs",
            "2",
            "-c",
            &cfg,
            "-d",
            run.to_str().unwrap(),
        ])
        .env("INCUBATOR_CRASH_AT", "term:40")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped by SIGTERM"),
        "{}",
        stderr(&out)
    );
    assert!(!run.join("stages/assemble/summary.json").exists());
    assert!(!run.join("stages/e2e/summary.json").exists());
    let out = incubator(&["run", "--jobs", "2", "-d", run.to_str().unwrap()]);
    assert_ok(&out, "the re-run");
    assert_eq!(model_files(&run), model_files(&reference));
}

#[test]
fn a_second_signal_ends_the_process_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), SLOW);
    let run = tmp.path().join("run");
    let child = spawn_e2e(&cfg, &run);
    wait_for_steps(&run, "e2e", 1);
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(30));
    signal(&child, "INT");
    let out = finish(child);
    assert_eq!(
        out.status.code(),
        Some(130),
        "the second signal (SIGINT) ends the process with 128 + 2:\n{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("stopped by"), "{}", stderr(&out));
    assert!(
        !run.join("stages/e2e/state.safetensors").exists(),
        "it did not wait to save"
    );
}

#[test]
fn a_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), SLOW);
    let run = tmp.path().join("run");
    let mut first = spawn_e2e(&cfg, &run);
    wait_for_steps(&run, "e2e", 1);

    let second = incubator(&["e2e", "-d", run.to_str().unwrap()]);
    assert!(!second.status.success());
    let e = stderr(&second);
    assert!(
        e.contains(&format!(
            "stage e2e is already running in pid {} on host",
            first.id()
        )) && e.contains("wait for it to finish"),
        "{e}"
    );
    let events = std::fs::read_to_string(run.join("events/e2e.jsonl")).unwrap();
    assert!(
        !events.contains("stage_failed") && events.matches("stage_started").count() == 1,
        "the refused process wrote nothing to the stage's events:\n{events}"
    );

    first.kill().unwrap(); // SIGKILL: the lock's record stays behind
    first.wait().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["e2e", "--no-progress", "-d", run.to_str().unwrap()])
        .env("INCUBATOR_CRASH_AT", "term:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "taking over the lock of pid {} on host",
            first.id()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs root: mounts a tmpfs (./scripts/test.sh runs it)"]
fn a_full_disk_fails_the_stage_keeps_the_last_state_and_the_next_run_resumes_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), SMALL);
    let reference = uninterrupted_e2e(&cfg, tmp.path());
    let disk = Tmpfs::mount(&tmp.path().join("disk"), 4);
    let run = disk.0.join("run");
    let state = run.join("stages/e2e/state.safetensors");

    // A state at step 20 of 28 (1024 images less the validation split: 28 batches), then the
    // disk fills up, leaving room for the small files.
    let out = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["e2e", "-c", &cfg, "-d", run.to_str().unwrap()])
        .env("INCUBATOR_CRASH_AT", "term:20")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let good = std::fs::read(&state).unwrap();
    let ballast = disk.0.join("ballast");
    fill(&ballast, 128 << 10);

    let out = incubator(&["e2e", "-d", run.to_str().unwrap()]);
    assert!(!out.status.success(), "the stage cannot save its epoch");
    let e = stderr(&out);
    assert!(
        e.contains("cannot write the resumable state")
            && e.contains("No space left on device")
            && e.contains("previous state file is kept")
            && e.contains("free space"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    assert!(
        std::fs::read(&state).unwrap() == good,
        "the last good state is intact"
    );
    let leftovers: Vec<_> = std::fs::read_dir(run.join("stages/e2e"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no half-written file stays: {leftovers:?}"
    );

    std::fs::remove_file(&ballast).unwrap();
    resumes_to_the_reference(&run, &reference, "resuming at epoch 1 step 20/28");
}

#[test]
fn a_finished_run_that_still_serves_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        &with_keys(
            SMALL,
            &[("data.train_limit", "256"), ("e2e.enabled", "false")],
        ),
    );
    let run = tmp.path().join("run");
    let child = spawn(&[
        "run",
        "--serve",
        "127.0.0.1:0",
        "-c",
        &cfg,
        "-d",
        run.to_str().unwrap(),
    ]);
    let start = Instant::now();
    while !run.join("report.md").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "TERM");
    let waited = Instant::now();
    let out = finish(child);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(waited.elapsed() < Duration::from_secs(5));
}
