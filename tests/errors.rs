//! Bad input gets a clear error naming the problem and the fix, and leaves the run directory
//! consistent (no stage marked finished that did not finish).

mod common;
use common::*;

#[test]
fn unknown_config_key_is_named_with_its_path_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "[optim]\nbatch_sise = 3\n");
    let run = tmp.path().join("run");
    let out = incubator(&["meta", "-c", &cfg, "-d", run.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("unknown key `optim.batch_sise`") && e.contains("fix its spelling"),
        "{e}"
    );
    assert!(!run.exists(), "a refused config creates no run directory");
}

#[test]
fn bad_config_values_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("[meta]\nepochs = -1\n", "meta.epochs"),
        ("[data]\ndataset = \"imagenet\"\n", "data.dataset"),
        ("[model]\nnum_heads = 5\n", "num_heads = 5"),
        ("[split]\ndivided_depths = [1, 2]\n", "split.divided_depths"),
        ("[optim]\nbatch_size = 0\n", "optim.batch_size"),
        // typos by three zeros: named, never an allocation abort or a loop for years
        (
            "[model]\ndepth = 1000000\n",
            "model.depth = 1000000 must be between 1 and 1024",
        ),
        (
            "[model]\nembed_dim = 1000000\n",
            "model.embed_dim = 1000000 must be between 1 and 65536",
        ),
        (
            "[model]\nnum_classes = 1000000000\n",
            "model.num_classes = 1000000000 must be between 1 and 1000000",
        ),
        (
            "[e2e]\nepochs = 1000000000\n",
            "e2e.epochs = 1000000000 must be between 1 and 100000",
        ),
        (
            "[augment]\nrepeated_augment = 1000000000\n",
            "augment.repeated_augment = 1000000000 must be between 1 and 64",
        ),
        (
            "[meta]\nsteps = 100000000000\n",
            "meta.steps = 100000000000 must be at most",
        ),
        (
            "[plugins]\nstrategy = \"nope\"\n",
            "unknown incubation strategy \"nope\"",
        ),
    ] {
        let cfg = write_config(tmp.path(), text);
        let out = incubator(&[
            "meta",
            "-c",
            &cfg,
            "-d",
            tmp.path().join("r").to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{text} was accepted");
        assert!(stderr(&out).contains(needle), "{text}: {}", stderr(&out));
        let _ = std::fs::remove_dir_all(tmp.path().join("r"));
    }
}

#[test]
fn missing_and_corrupt_datasets_say_how_to_fix_them() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let cfg = write_config(
        tmp.path(),
        &format!("[data]\ndataset = \"mnist\"\npath = {:?}\n", empty),
    );
    let out = incubator(&[
        "meta",
        "-c",
        &cfg,
        "-d",
        tmp.path().join("r1").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("incubator data fetch mnist"),
        "{}",
        stderr(&out)
    );

    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(empty.join(f), b"this is not an IDX file").unwrap();
    }
    let out = incubator(&[
        "meta",
        "-c",
        &cfg,
        "-d",
        tmp.path().join("r2").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("IDX") && e.contains("train-"), "{e}");
}

#[test]
fn checkpoint_that_does_not_fit_is_refused_and_stages_order_is_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &with_keys(TINY, &[("meta.epochs", "1")]));
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();

    // incubate before any run: nothing to continue (tests/run_dir.rs); before meta: says so
    let early = incubator(&["incubate", "--module", "0", "-c", &cfg, "-d", run_s]);
    assert!(!early.status.success());
    assert!(stderr(&early).contains("no run at"), "{}", stderr(&early));
    assert!(!run.exists());
    assert_ok(&incubator(&["e2e", "-c", &cfg, "-d", run_s]), "e2e");
    let early = incubator(&["incubate", "--module", "0", "-d", run_s]);
    assert!(!early.status.success());
    assert!(
        stderr(&early).contains("run `incubator meta"),
        "{}",
        stderr(&early)
    );
    let asm = incubator(&["assemble", "-d", run_s]);
    assert!(
        stderr(&asm).contains("incubator incubate --module 0"),
        "{}",
        stderr(&asm)
    );

    assert_ok(&incubator(&["meta", "-d", run_s]), "meta");
    // replace the meta checkpoint with one of another model
    let other = tempfile::tempdir().unwrap();
    let other_cfg = write_config(
        other.path(),
        &with_keys(TINY, &[("model.embed_dim", "16"), ("meta.epochs", "1")]),
    );
    let other_run = other.path().join("run");
    assert_ok(
        &incubator(&["meta", "-c", &other_cfg, "-d", other_run.to_str().unwrap()]),
        "other meta",
    );
    std::fs::copy(
        other_run.join("stages/meta/model.safetensors"),
        run.join("stages/meta/model.safetensors"),
    )
    .unwrap();
    let out = incubator(&["incubate", "--module", "1", "-d", run_s]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("does not fit the model") && e.contains("shape [16]") && e.contains("[32]"),
        "{e}"
    );
    assert!(!run.join("stages/incubate-1/summary.json").exists());
    let events = std::fs::read_to_string(run.join("events/incubate-1.jsonl")).unwrap();
    assert!(events.contains("stage_failed"), "{events}");

    // a different config for an existing run directory is refused
    let out = incubator(&["meta", "-c", &other_cfg, "-d", run_s]);
    assert!(
        stderr(&out).contains("different configuration") && stderr(&out).contains("embed_dim"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn nan_loss_stops_the_stage_without_marking_it_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let diverging = with_keys(
        TINY,
        &[("optim.base_lr", "1e30"), ("optim.clip_grad", "1e30")],
    );
    let cfg = write_config(tmp.path(), &diverging);
    let run = tmp.path().join("run");
    let out = incubator(&["meta", "-c", &cfg, "-d", run.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("the loss became") && e.contains("Lower optim.base_lr"),
        "{e}"
    );
    assert!(!run.join("stages/meta/summary.json").exists());
    assert!(!run.join("stages/meta/model.safetensors").exists());
}

#[test]
fn a_missing_config_file_says_so_once() {
    let out = incubator(&[
        "meta",
        "-c",
        "/nonexistent/my.toml",
        "-d",
        "/nonexistent/run",
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("cannot read config /nonexistent/my.toml: No such file"),
        "{e}"
    );
    assert_eq!(
        e.matches("No such file").count(),
        1,
        "the OS error once: {e}"
    );
}

/// A real `kill -9` from outside (the crash test in tests/crash.rs places its kills exactly;
/// this one lands wherever the stage is once its first state exists).
#[test]
fn stages_killed_from_outside_resume_to_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let straight = tmp.path().join("straight");
    let killed = tmp.path().join("killed");
    for (stage, args, result) in [
        ("meta", vec!["meta"], "model.safetensors"),
        (
            "incubate-0",
            vec!["incubate", "--module", "0"],
            "module.safetensors",
        ),
    ] {
        let with_dir = |dir: &std::path::Path| {
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.extend([
                "-c".into(),
                cfg.clone(),
                "-d".into(),
                dir.display().to_string(),
            ]);
            a
        };
        let a = with_dir(&straight);
        assert_ok(
            &incubator(&a.iter().map(String::as_str).collect::<Vec<_>>()),
            stage,
        );

        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_incubator"))
            .args(with_dir(&killed))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let state = killed.join("stages").join(stage).join("state.safetensors");
        let t = std::time::Instant::now();
        while !state.exists() && t.elapsed().as_secs() < 300 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !killed
                .join("stages")
                .join(stage)
                .join("summary.json")
                .exists(),
            "{stage} killed before finishing"
        );
        let a = with_dir(&killed);
        let resumed = incubator(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_ok(&resumed, &format!("resumed {stage}"));
        assert!(
            stderr(&resumed).contains("resuming at epoch"),
            "{}",
            stderr(&resumed)
        );
        let file = format!("stages/{stage}/{result}");
        assert!(
            std::fs::read(straight.join(&file)).unwrap()
                == std::fs::read(killed.join(&file)).unwrap(),
            "resumed {stage} gives the uninterrupted weights"
        );
    }
}

/// A model within every bound that this machine still cannot hold is refused before its
/// first stage, with the estimate and the limit; the run takes a corrected config after, and
/// the estimate can be overruled.
#[test]
fn a_run_that_cannot_fit_in_memory_is_refused_before_any_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let r = run.to_str().unwrap();
    // ViT-22B's width and depth: about 4.5 TB with its optimizer state
    let huge = write_config(
        tmp.path(),
        "[model]\nembed_dim = 16384\ndepth = 48\nnum_heads = 16\n[data]\ntrain_limit = 64\ntest_limit = 16\n",
    );
    for command in ["run", "meta", "e2e"] {
        let start = std::time::Instant::now();
        let out = incubator(&[command, "-c", &huge, "-d", r]);
        assert!(!out.status.success(), "{command} was accepted");
        let e = stderr(&out);
        assert!(
            e.contains("this run needs about")
                && e.contains("GiB (parameters")
                && e.contains("available memory")
                && e.contains("model.embed_dim = 16384")
                && e.contains("--ignore-memory-estimate"),
            "{command}: {e}"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        assert!(!run.join("stages").exists(), "{command} started a stage");
    }
    // the same run with a model that fits
    let tiny = write_config(tmp.path(), &with_keys(TINY, &[("e2e.epochs", "1")]));
    // a limit of one's own (INCUBATOR_MEMORY_LIMIT, bytes) is the limit
    let limited = std::process::Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["e2e", "-c", &tiny, "-d", r])
        .env("INCUBATOR_MEMORY_LIMIT", "1000000")
        .output()
        .unwrap();
    let e = stderr(&limited);
    assert!(
        !limited.status.success() && e.contains("INCUBATOR_MEMORY_LIMIT is 1 MiB"),
        "{e}"
    );
    let overruled = std::process::Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["e2e", "-c", &tiny, "-d", r, "--ignore-memory-estimate"])
        .env("INCUBATOR_MEMORY_LIMIT", "1000000")
        .output()
        .unwrap();
    assert_ok(&overruled, "e2e with the estimate overruled");
    assert!(run.join("stages/e2e/summary.json").exists());
}

/// The commands' stdout as a pipe whose reader is already gone (`incubator ... | head -1` once
/// `head` has exited).
fn with_reader_gone(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    std::process::Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap()
}

/// `incubator bench | head -1`: a command whose output is only what it prints ends as a Unix
/// tool does (killed by SIGPIPE), not with a panic's trace.
#[test]
fn commands_that_only_print_end_quietly_when_their_reader_is_gone() {
    use std::os::unix::process::ExitStatusExt;
    const SIGPIPE: i32 = 13;
    for args in [&["config"][..], SMALL_BENCH] {
        let out = with_reader_gone(args);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.signal(), Some(SIGPIPE), "{args:?}: {err}");
    }
}

/// `incubator run ... | head -3`: the run, whose reader has gone before its last line (the
/// report table), still finishes every stage cleanly; what it would have printed is dropped, the
/// run directory has it all.
#[test]
fn a_run_whose_reader_is_gone_finishes_its_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let run = tmp.path().join("run");
    let out = with_reader_gone(&["run", "-c", &cfg, "-d", run.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.lines().any(|l| l.starts_with("| e2e |")), "{report}");
}
