//! The run directory under hostile use: two commands creating one run, a config.toml deleted
//! or edited under finished stages, read-only commands on a mistyped path, and a run whose
//! first stage failed taking a corrected config.

mod common;
use common::*;
use std::path::Path;

/// `text` with `from` replaced by `to`; fails if `from` is not in it (a test that edits a
/// config must not silently test the unedited one).
fn edited(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the config");
    text.replace(from, to)
}

/// The tiny run with one epoch per stage, as fast as a stage gets.
fn quick() -> String {
    let t = edited(TINY, "[meta]\nepochs = 3\n", "[meta]\nepochs = 1\n");
    edited(&t, "[e2e]\nepochs = 8\n", "[e2e]\nepochs = 1\n")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The quick config at width 32 (`a.toml`) and at width 16 (`b.toml`).
fn two_widths(dir: &Path) -> (String, String) {
    let a = write(dir, "a.toml", &quick());
    let b = write(
        dir,
        "b.toml",
        &edited(&quick(), "embed_dim = 32", "embed_dim = 16"),
    );
    (a, b)
}

#[test]
fn two_commands_creating_one_run_with_different_configs_cannot_both_win() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_widths(tmp.path());
    for round in 0..3 {
        let run = tmp.path().join(format!("run{round}"));
        let run_s = run.to_str().unwrap().to_string();
        let bin = env!("CARGO_BIN_EXE_incubator");
        let meta = std::process::Command::new(bin)
            .args(["meta", "-c", &a, "-d", &run_s])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let e2e = std::process::Command::new(bin)
            .args(["e2e", "-c", &b, "-d", &run_s])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (meta, e2e) = (
            meta.wait_with_output().unwrap(),
            e2e.wait_with_output().unwrap(),
        );
        let stored = std::fs::read_to_string(run.join("config.toml")).unwrap();
        let stored_dim = if stored.contains("embed_dim = 16") {
            16
        } else {
            32
        };
        // whichever won, the other was refused, and what trained is what is recorded
        let (winner, loser) = if stored_dim == 32 {
            (&meta, &e2e)
        } else {
            (&e2e, &meta)
        };
        assert_ok(winner, "the command whose config was recorded");
        assert!(!loser.status.success(), "both commands succeeded");
        assert!(
            stderr(loser).contains("different configuration")
                && stderr(loser).contains("model.embed_dim"),
            "{}",
            stderr(loser)
        );
    }
}

#[test]
fn finished_stages_refuse_a_config_they_did_not_train_under() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, other) = two_widths(tmp.path());
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    assert_ok(&incubator(&["meta", "-c", &cfg, "-d", run_s]), "meta");
    let summary = std::fs::read_to_string(run.join("stages/meta/summary.json")).unwrap();
    assert!(summary.contains("\"config_sha256\""), "{summary}");
    let model = std::fs::read(run.join("stages/meta/model.safetensors")).unwrap();

    // config.toml deleted: another config cannot adopt the finished stages
    let recorded = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::remove_file(run.join("config.toml")).unwrap();
    for command in ["run", "meta", "e2e"] {
        let out = incubator(&[command, "-c", &other, "-d", run_s]);
        assert!(!out.status.success(), "{command} adopted the run");
        let e = stderr(&out);
        assert!(
            e.contains("no config.toml") && e.contains("config_toml"),
            "{command}: {e}"
        );
        assert!(
            !run.join("config.toml").exists(),
            "{command} wrote a config"
        );
    }

    // config.toml edited by hand: the finished stage names what changed
    std::fs::write(
        run.join("config.toml"),
        edited(&recorded, "embed_dim = 32", "embed_dim = 16"),
    )
    .unwrap();
    for args in [
        vec!["meta", "-d", run_s],
        vec!["run", "-d", run_s],
        vec!["report", "-d", run_s],
    ] {
        let out = incubator(&args);
        assert!(!out.status.success(), "{args:?} accepted the edited config");
        let e = stderr(&out);
        assert!(
            e.contains("finished under another configuration")
                && e.contains("model.embed_dim is 32 there, 16 here"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(
        std::fs::read(run.join("stages/meta/model.safetensors")).unwrap(),
        model,
        "the finished stage's model is untouched"
    );
    // refused before anything trained: `run` did not train the E2E baseline beside meta
    assert!(!run.join("stages/e2e").exists());
    // where the data are and how a process runs may change: the dataset moved, more threads
    let moved = edited(
        &recorded,
        "[data]\n",
        "[data]\npath = \"/moved/data\"\nworkers = 7\n",
    );
    std::fs::write(run.join("config.toml"), moved).unwrap();
    // (a Slurm plan reads every stage's summary, and no data)
    let plan = incubator(&["slurm", "submit", "--dry-run", "-d", run_s]);
    assert_ok(&plan, "slurm plan, data moved");
    assert!(!String::from_utf8_lossy(&plan.stdout).contains("incubator meta"));
    // restored, the run goes on
    std::fs::write(run.join("config.toml"), &recorded).unwrap();
    assert_ok(&incubator(&["meta", "-d", run_s]), "meta, restored");
}

#[test]
fn commands_that_continue_a_run_create_nothing_on_a_mistyped_path() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "a.toml", &quick());
    let typo = tmp.path().join("typo");
    let t = typo.to_str().unwrap();
    for args in [
        vec!["eval", "-d", t],
        vec!["export", "-d", t],
        vec!["report", "-d", t],
        vec!["slurm", "status", t],
        vec!["incubate", "--module", "0", "-d", t],
        vec!["incubate", "--module", "0", "-c", &cfg, "-d", t],
        vec!["assemble", "-d", t],
    ] {
        let out = incubator(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let e = stderr(&out);
        assert!(
            e.contains(&format!("no run at {t}")) && e.contains("incubator run"),
            "{args:?}: {e}"
        );
        assert!(!typo.exists(), "{args:?} created {t}");
    }
}

#[test]
fn a_run_whose_first_stage_saved_nothing_takes_a_corrected_config() {
    let tmp = tempfile::tempdir().unwrap();
    let diverging = write(
        tmp.path(),
        "bad.toml",
        &edited(
            &quick(),
            "[optim]\n",
            "[optim]\nbase_lr = 1e30\nclip_grad = 1e30\n",
        ),
    );
    let fixed = write(tmp.path(), "fixed.toml", &quick());
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let out = incubator(&["meta", "-c", &diverging, "-d", run_s]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("the loss became"), "{}", stderr(&out));
    // the NaN stopped meta before it saved anything: the corrected config is taken
    let out = incubator(&["meta", "-c", &fixed, "-d", run_s]);
    assert_ok(&out, "meta with the corrected config");
    assert!(
        stderr(&out).contains("takes the one given"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("optim.base_lr"), "{}", stderr(&out));
    let stored = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(!stored.contains("1e30"), "{stored}");
    // once a stage has saved results, the config is the run's
    let out = incubator(&["e2e", "-c", &diverging, "-d", run_s]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("different configuration")
            && e.contains("optim.base_lr")
            && e.contains("stages/meta"),
        "{e}"
    );
}

#[test]
fn export_never_writes_over_the_runs_files_and_replaces_an_export_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "a.toml", &quick());
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    assert_ok(&incubator(&["meta", "-c", &cfg, "-d", run_s]), "meta");
    let model = std::fs::read(run.join("stages/meta/model.safetensors")).unwrap();
    for inside in ["stages/meta", "stages", "", "events", "config.toml"] {
        let out = run.join(inside);
        let o = incubator(&[
            "export",
            "-d",
            run_s,
            "--model",
            "meta",
            "--force",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "export to {inside:?} accepted");
        assert!(
            stderr(&o).contains("inside the run directory"),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(
        std::fs::read(run.join("stages/meta/model.safetensors")).unwrap(),
        model
    );
    assert_ok(
        &incubator(&["export", "-d", run_s, "--model", "meta"]),
        "export to RUN/export",
    );
    let again = incubator(&["export", "-d", run_s, "--model", "meta"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("--force") && stderr(&again).contains("model.safetensors"),
        "{}",
        stderr(&again)
    );
    assert_ok(
        &incubator(&["export", "-d", run_s, "--model", "meta", "--force"]),
        "export --force",
    );
    let zero = incubator(&[
        "export",
        "-d",
        run_s,
        "--model",
        "meta",
        "--check-images",
        "0",
    ]);
    assert!(!zero.status.success());
    assert!(
        stderr(&zero).contains("--check-images") && !stderr(&zero).contains("panicked"),
        "{}",
        stderr(&zero)
    );
}
