//! Runs on a real single-node Slurm (scripts/slurm-local.sh starts one; it needs root): a tiny
//! run submitted as jobs runs in dependency order and ends with the model `incubator run`
//! makes; a failing incubation stops the assembly, and `slurm status` names it and its log.

mod common;
use common::*;
use incubator_core::events::{Event, Record};
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

/// Starts the local cluster once per test binary (stopped by scripts/test.sh at its end).
fn local_slurm() {
    static START: Once = Once::new();
    START.call_once(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-local.sh");
        let out = std::process::Command::new(script)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "local Slurm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// `slurm submit -c cfg -d run`, which must succeed.
fn submit(cfg: &str, run: &Path) {
    assert_ok(
        &incubator(&["slurm", "submit", "-c", cfg, "-d", run.to_str().unwrap()]),
        "slurm submit",
    );
}

/// The run's `slurm/jobs.json`.
fn jobs(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("slurm/jobs.json")).unwrap()).unwrap()
}

/// The job id of the incubation array.
fn incubate_array(run: &Path) -> String {
    jobs(run)["jobs"]["incubate"].as_str().unwrap().to_string()
}

/// The row of `slurm status`'s table for `stage`.
fn status_row<'a>(text: &'a str, stage: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("| {stage} |")))
        .unwrap_or_else(|| panic!("no row for {stage}: {text}"))
}

/// Waits until none of the run's jobs is pending or running.
fn wait_for_jobs(run: &Path) {
    let jobs = jobs(run);
    let ids: Vec<String> = jobs["jobs"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let start = Instant::now();
    // Empty three polls in a row: a requeued task can be missing from one listing while
    // slurmctld moves it back to the queue.
    let mut empty = 0;
    loop {
        let out = std::process::Command::new("squeue")
            .args(["-h", "-o", "%i", "-j", &ids.join(",")])
            .output()
            .unwrap();
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            empty += 1;
            if empty == 3 {
                return;
            }
        } else {
            empty = 0;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "jobs still queued after 10 min"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `cfg` locally (`incubator run`) beside `run`; each of `files` must be byte-identical.
fn same_as_a_local_run(cfg: &str, run: &Path, scratch: &Path, files: &[&str]) {
    let local = scratch.join("local");
    assert_ok(
        &incubator(&[
            "run",
            "-c",
            cfg,
            "-d",
            local.to_str().unwrap(),
            "--no-progress",
        ]),
        "local run",
    );
    for file in files {
        assert!(
            std::fs::read(run.join(file)).unwrap() == std::fs::read(local.join(file)).unwrap(),
            "{file} differs from the local run's"
        );
    }
}

fn events(run: &Path, slug: &str) -> Vec<Record> {
    std::fs::read_to_string(run.join(format!("events/{slug}.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn time_of(run: &Path, slug: &str, started: bool) -> f64 {
    events(run, slug)
        .iter()
        .find(|r| {
            matches!(
                (&r.event, started),
                (Event::StageStarted { .. }, true) | (Event::StageFinished { .. }, false)
            )
        })
        .unwrap_or_else(|| {
            panic!(
                "{slug} has no {} event",
                if started { "start" } else { "finish" }
            )
        })
        .time
}

#[test]
#[ignore = "needs root: starts a single-node Slurm (./scripts/test.sh runs it)"]
fn a_run_submitted_to_slurm_runs_in_order_and_ends_with_the_local_model() {
    local_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let run = tmp.path().join("cluster");
    let out = incubator(&["slurm", "submit", "-c", &cfg, "-d", run.to_str().unwrap()]);
    assert_ok(&out, "slurm submit");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.contains("incubate") && printed.contains("array [0, 1, 2, 3]"),
        "{printed}"
    );
    wait_for_jobs(&run);

    // dependency order, from the stages' own events
    let meta_done = time_of(&run, "meta", false);
    let mut last_incubation = 0.0f64;
    for i in 0..4 {
        assert!(
            time_of(&run, &format!("incubate-{i}"), true) >= meta_done,
            "incubate-{i} before meta finished"
        );
        last_incubation = last_incubation.max(time_of(&run, &format!("incubate-{i}"), false));
    }
    assert!(
        time_of(&run, "assemble", true) >= last_incubation,
        "assembly before the incubations finished"
    );
    // each job's wait, as Slurm reports it, is in its start event (the dashboard's timeline
    // draws it): an incubation was held at least until the meta model finished
    for slug in ["meta", "incubate-2", "assemble"] {
        let (held, queued, started) = events(&run, slug)
            .iter()
            .find_map(|r| match &r.event {
                Event::StageStarted {
                    held_s, queued_s, ..
                } => Some((*held_s, *queued_s, r.time)),
                _ => None,
            })
            .unwrap();
        let (held, queued) = (held.expect("held_s"), queued.expect("queued_s"));
        assert!(
            held >= 0.0 && queued >= 0.0,
            "{slug}: held {held}, queued {queued}"
        );
        if slug == "incubate-2" {
            // scontrol's times have whole seconds
            let submitted = started - queued - held;
            assert!(
                submitted + held >= meta_done - 2.0,
                "{slug} eligible before meta finished: held {held} s"
            );
        }
    }

    // the same model as a local run of the same config
    same_as_a_local_run(
        &cfg,
        &run,
        tmp.path(),
        &[
            "stages/assemble/model.safetensors",
            "stages/e2e/model.safetensors",
        ],
    );

    let status = incubator(&["slurm", "status", run.to_str().unwrap()]);
    assert_ok(&status, "slurm status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(text.matches("COMPLETED").count(), 7, "{text}");
    assert_eq!(text.matches("finished, top-1").count(), 7, "{text}");
    assert!(!text.contains("NaN"), "{text}");

    // submitting again has nothing left to do
    let again = incubator(&["slurm", "submit", "-d", run.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to submit"));
}

#[test]
#[ignore = "needs root: starts a single-node Slurm (./scripts/test.sh runs it)"]
fn a_failed_incubation_stops_the_assembly_and_status_says_where_to_look() {
    local_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let lib = incubator_testkit::library_next_to_test("incubator-test-plugin-panicking");
    let text = format!(
        "{}[plugins]\nstrategy = \"panicking\"\nlibraries = [{:?}]\n[plugins.options]\nfail_module = 2\n",
        with_keys(TINY, &[("e2e.enabled", "false")]),
        lib.display().to_string()
    );
    let cfg = write_config(tmp.path(), &text);
    let run = tmp.path().join("cluster");
    submit(&cfg, &run);
    wait_for_jobs(&run);

    assert!(
        run.join("stages/incubate-1/summary.json").exists(),
        "the other modules finished"
    );
    assert!(!run.join("stages/incubate-2/summary.json").exists());
    assert!(
        events(&run, "assemble").is_empty(),
        "the assembly never ran"
    );

    let status = incubator(&["slurm", "status", run.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    let row = status_row(&text, "incubate-2");
    assert!(
        row.contains("FAILED") && row.contains("refuses module 2"),
        "{text}"
    );
    let log = row.split('|').nth(6).unwrap().trim();
    assert!(log.ends_with(".out"), "{row}");
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("refuses module 2"),
        "the log has the panic"
    );
    let assemble = text.lines().find(|l| l.starts_with("| assemble ")).unwrap();
    assert!(
        assemble.contains("CANCELLED") && assemble.contains("not finished"),
        "{assemble}"
    );
}

#[test]
fn dry_run_prints_scripts_with_resources_and_refuses_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        &format!("{TINY}[slurm.default]\npartition = \"gpu\"\ntime = \"1:00:00\"\n[slurm.incubate]\ngpus = 1\nmem = \"8G\"\n"),
    );
    let out = incubator(&[
        "slurm",
        "submit",
        "--dry-run",
        "-c",
        &cfg,
        "-d",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    assert_ok(&out, "dry run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("#SBATCH --partition=gpu").count(), 4, "{text}");
    assert_eq!(
        text.matches("#SBATCH --gpus=1").count(),
        1,
        "only the incubations"
    );
    assert!(
        text.contains("--dependency=afterok:<meta>")
            && text.contains("--dependency=afterok:<incubate>"),
        "{text}"
    );
    assert!(
        !tmp.path().join("r/slurm/meta.sbatch").exists(),
        "a dry run writes no script"
    );

    let bad = write_config(
        tmp.path(),
        &format!("{TINY}[slurm.assemble]\ntime = \"two hours\"\n"),
    );
    let out = incubator(&[
        "slurm",
        "submit",
        "--dry-run",
        "-c",
        &bad,
        "-d",
        tmp.path().join("b").to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("slurm.assemble.time") && stderr(&out).contains("HH:MM:SS"),
        "{}",
        stderr(&out)
    );
}

/// The jobs a dry run would submit, in order: each job's name and the jobs it waits for.
fn dry_run_jobs(config: &str, run: &Path) -> Vec<(String, Vec<String>)> {
    let out = incubator(&[
        "slurm",
        "submit",
        "--dry-run",
        "-c",
        config,
        "-d",
        run.to_str().unwrap(),
    ]);
    assert_ok(&out, "dry run");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("# sbatch --parsable"))
        .map(|l| {
            let (after, script) = l.trim().rsplit_once(' ').unwrap_or(("", l.trim()));
            let name = Path::new(script)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let after = after
                .strip_prefix("--dependency=afterok:")
                .map(|a| {
                    a.split(':')
                        .map(|j| j.trim_matches(['<', '>']).to_string())
                        .collect()
                })
                .unwrap_or_default();
            (name, after)
        })
        .collect()
}

#[test]
fn jobs_wait_for_what_the_plan_says_for_ordered_and_taught_strategies() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = |strategy: &str, dir: &str| {
        let lib = library(&format!("incubator-{strategy}"));
        let text = format!(
            "{TINY}[plugins]\nstrategy = {strategy:?}\nlibraries = [{:?}]\n",
            lib.display().to_string()
        );
        let cfg = write_config(tmp.path(), &text);
        dry_run_jobs(&cfg, &tmp.path().join(dir))
    };
    let owned = |v: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        v.iter()
            .map(|(n, a)| (n.to_string(), a.iter().map(|s| s.to_string()).collect()))
            .collect()
    };
    // sequential: a chain of modules, each job after the one before (not also after meta)
    assert_eq!(
        jobs("sequential", "seq"),
        owned(&[
            ("meta", &[]),
            ("incubate-0", &["meta"]),
            ("incubate-1", &["incubate-0"]),
            ("incubate-2", &["incubate-1"]),
            ("incubate-3", &["incubate-2"]),
            ("assemble", &["incubate-3"]),
            ("e2e", &[]),
        ])
    );
    // m2mKD taught by this run's baseline: the baseline first, the array after it and meta
    assert_eq!(
        jobs("m2mkd", "kd"),
        owned(&[
            ("e2e", &[]),
            ("meta", &[]),
            ("incubate", &["e2e", "meta"]),
            ("assemble", &["incubate"]),
        ])
    );
}

fn slurm(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn train_steps(run: &Path, slug: &str) -> usize {
    events(run, slug)
        .iter()
        .filter(|r| matches!(r.event, Event::TrainStep { .. }))
        .count()
}

/// Waits until the tasks `ids` were each requeued and run again. Slurm holds a requeued job
/// until its old credential expires (scripts/slurm-local.sh sets 10 s); starting it earlier by
/// force makes Slurm kill it ("job credential revoked"), so the test waits as a cluster would.
fn wait_until_requeued_and_running(ids: &[String]) {
    let start = Instant::now();
    let mut requeued = vec![false; ids.len()];
    let mut back = vec![false; ids.len()];
    while back.iter().any(|b| !b) {
        for (k, id) in ids.iter().enumerate() {
            let state = slurm(&["squeue", "-h", "-o", "%T", "-j", id]);
            if state.trim() == "PENDING" {
                requeued[k] = true;
            } else if requeued[k] {
                back[k] = true; // running again (or already done)
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{ids:?} were not all requeued and restarted (requeued {requeued:?}, back {back:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log of module `m`'s array task, once the resumed stage's line is in it (the queue can
/// look empty for a moment between a requeued task's two runs).
fn resumed_log(run: &Path, array: &str, m: usize) -> String {
    let path = run.join(format!("slurm/logs/incubate-{m}-{array}.out"));
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(&format!("[incubate-{m}] resuming at epoch"))
            || start.elapsed() > Duration::from_secs(120)
        {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Incubations long enough (several seconds on an idle machine) that a signal arrives while
/// they train: 2 modules of 8 epochs of 2048 images.
const LONG_INCUBATIONS: &str = "seed = 1
[model]
embed_dim = 64
depth = 4
num_heads = 2
[split]
divided_depths = [2, 2]
[data]
train_limit = 2048
test_limit = 128
[meta]
epochs = 1
[incubate]
epochs = 8
[finetune]
epochs = 1
[e2e]
enabled = false
[checkpoint]
every_steps = 10
";

/// Waits until `slug` has taken `steps` optimizer steps.
fn wait_for_steps(run: &Path, slug: &str, steps: usize) {
    let start = Instant::now();
    while train_steps(run, slug) < steps {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{slug} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: starts a single-node Slurm (./scripts/test.sh runs it)"]
fn requeued_and_time_limited_incubations_resume_and_the_run_ends_with_the_local_model() {
    local_slurm();
    let tmp = tempfile::tempdir().unwrap();
    // two incubations side by side on the two cores
    let cfg = write_config(tmp.path(), LONG_INCUBATIONS);
    let run = tmp.path().join("cluster");
    submit(&cfg, &run);
    let array = incubate_array(&run);
    wait_for_steps(&run, "incubate-0", 20);
    wait_for_steps(&run, "incubate-1", 20);
    // Module 0: requeued by an administrator (Slurm sends SIGTERM, then requeues it).
    slurm(&["scontrol", "requeue", &format!("{array}_0")]);
    // Module 1: the time-limit warning our scripts ask for (SIGUSR1 to the batch step): the
    // stage saves its state and requeues its own job.
    slurm(&["scancel", "--signal=USR1", "--batch", &format!("{array}_1")]);
    wait_until_requeued_and_running(&[format!("{array}_0"), format!("{array}_1")]);
    wait_for_jobs(&run);

    let (log0, log1) = (resumed_log(&run, &array, 0), resumed_log(&run, &array, 1));
    wait_for_jobs(&run);
    assert!(
        log0.contains("incubate-0 stopped by SIGTERM")
            && log0.contains("[incubate-0] resuming at epoch"),
        "{log0}"
    );
    assert!(
        log1.contains("incubate-1 stopped by SIGUSR1")
            && log1.contains(&format!("job {array}_1 requeued"))
            && log1.contains("[incubate-1] resuming at epoch"),
        "{log1}"
    );
    for m in [0, 1] {
        let interrupted = events(&run, &format!("incubate-{m}"))
            .iter()
            .filter(|r| matches!(r.event, Event::StageInterrupted { .. }))
            .count();
        assert_eq!(interrupted, 1, "incubate-{m} was interrupted once");
    }

    same_as_a_local_run(
        &cfg,
        &run,
        tmp.path(),
        &[
            "stages/incubate-0/module.safetensors",
            "stages/incubate-1/module.safetensors",
            "stages/assemble/model.safetensors",
        ],
    );
    let status = incubator(&["slurm", "status", run.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(text.matches("finished, top-1").count(), 4, "{text}");
}

#[test]
#[ignore = "needs root: starts a single-node Slurm (./scripts/test.sh runs it)"]
fn status_names_cancelled_array_tasks_that_never_started() {
    local_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &with_keys(TINY, &[("e2e.enabled", "false")]));
    let run = tmp.path().join("cluster");
    submit(&cfg, &run);
    // The array waits for the meta model; cancelled now, its tasks never get records of their own.
    slurm(&["scancel", &incubate_array(&run)]);
    wait_for_jobs(&run);
    let status = incubator(&["slurm", "status", run.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    for m in 0..4 {
        let row = status_row(&text, &format!("incubate-{m}"));
        assert!(
            row.contains("CANCELLED") && !row.contains("unknown"),
            "{text}"
        );
    }
}

/// `incubator sweep submit`: one command submits every run's stages; once they finish, the
/// sweep's report has the numbers the same sweep trained here has, and submitting again
/// submits nothing.
#[test]
#[ignore = "needs root: starts a single-node Slurm (./scripts/test.sh runs it)"]
fn a_sweep_submitted_to_slurm_reports_what_the_same_sweep_run_here_reports() {
    local_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tiny.toml");
    let spec = tmp.path().join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            "[sweep]\nconfigs = [\"{tiny}\"]\nseeds = [0, 1]\n[sweep.set]\n\"data.train_limit\" = 256\n\"data.test_limit\" = 128\n\"e2e.epochs\" = 3\n[grid]\n\"optim.base_lr\" = [0.032]\n"
        ),
    )
    .unwrap();
    let spec = spec.to_str().unwrap();
    let cluster = tmp.path().join("cluster");
    let out = incubator(&["sweep", "submit", spec, "-d", cluster.to_str().unwrap()]);
    assert_ok(&out, "sweep submit");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(printed.contains("2 of 2 runs submitted"), "{printed}");
    for seed in [0, 1] {
        wait_for_jobs(&cluster.join(format!("runs/optim.base_lr=0.032/seed{seed}")));
    }
    assert_ok(
        &incubator(&["sweep", "report", "-d", cluster.to_str().unwrap()]),
        "sweep report",
    );
    let local = tmp.path().join("local");
    assert_ok(
        &incubator(&["sweep", "run", spec, "-d", local.to_str().unwrap()]),
        "the same sweep here",
    );
    let numbers = |dir: &Path| -> Vec<serde_json::Value> {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        r["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| {
                serde_json::json!([
                    run["seed"],
                    run["assembled_top1"],
                    run["assembled_top5"],
                    run["method_gflop"],
                    run["e2e"]["top1"],
                    run["e2e"]["top5"]
                ])
            })
            .collect()
    };
    let cluster_numbers = numbers(&cluster);
    assert_eq!(cluster_numbers.len(), 2);
    assert_eq!(cluster_numbers, numbers(&local));
    let again = incubator(&["sweep", "submit", spec, "-d", cluster.to_str().unwrap()]);
    assert_ok(&again, "sweep submit again");
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 of 2 runs submitted"));
}

/// `[slurm] tasks_per_stage = 2` (one process for the meta model, by its own section): each
/// stage's job starts 2 ranks with `srun --mpi=pmix`, and the run ends with the bytes the same
/// stages make as 2 ranks under `mpirun`, with one writer; status gives each stage's ranks.
#[test]
#[ignore = "needs root and Open MPI with --features mpi: starts a single-node Slurm (./scripts/test.sh runs it)"]
fn stages_of_two_tasks_train_as_two_ranks_under_srun_and_match_mpirun() {
    local_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        &format!(
            "{}[slurm.default]\ntasks_per_stage = 2\n[slurm.meta]\ntasks_per_stage = 1\n",
            with_keys(
                TINY,
                &[("model.depth", "2"), ("split.divided_depths", "[1, 1]")]
            )
        ),
    );
    let run = tmp.path().join("cluster");
    let out = incubator(&["slurm", "submit", "-c", &cfg, "-d", run.to_str().unwrap()]);
    assert_ok(&out, "slurm submit");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.contains("(array [0, 1]), 2 processes a stage"),
        "{printed}"
    );
    let script = std::fs::read_to_string(run.join("slurm/incubate.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --ntasks=2\n") && script.contains("exec srun --ntasks=2 "),
        "{script}"
    );
    wait_for_jobs(&run);

    // the same stages here: the meta model by one process, the rest by 2 ranks under mpirun
    let local = tmp.path().join("local");
    let local_dir = local.to_str().unwrap();
    assert_ok(
        &incubator(&["meta", "-c", &cfg, "-d", local_dir, "--no-progress"]),
        "local meta",
    );
    assert_ok(
        &mpirun(
            2,
            &["run", "-c", &cfg, "-d", local_dir, "--no-progress"],
            None,
        ),
        "local run as 2 ranks",
    );
    assert_same_models(&local, &run, "Slurm's 2-task stages against mpirun's");
    for stage in ["meta", "incubate-0", "incubate-1", "assemble", "e2e"] {
        let started = events(&run, stage)
            .iter()
            .filter(|r| matches!(r.event, Event::StageStarted { .. }))
            .count();
        assert_eq!(started, 1, "{stage}: one writer");
    }
    // rank 0 said how the step's time went, once per stage that trained as 2 ranks
    let log = std::fs::read_dir(run.join("slurm/logs"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("incubate-1-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("the log of incubate-1");
    assert_eq!(
        log.matches("2 ranks: ").count(),
        1,
        "incubate-1's log: {log}"
    );

    let status = incubator(&["slurm", "status", run.to_str().unwrap()]);
    assert_ok(&status, "slurm status");
    let text = String::from_utf8_lossy(&status.stdout);
    let ranks_of = |stage: &str| status_row(&text, stage).split('|').nth(3).unwrap().trim();
    assert_eq!(ranks_of("meta"), "1", "{text}");
    for stage in ["incubate-0", "incubate-1", "assemble", "e2e"] {
        assert_eq!(ranks_of(stage), "2", "{stage}: {text}");
    }
    assert_eq!(text.matches("finished, top-1").count(), 5, "{text}");
}

/// `srun -n 2` without an MPI plugin starts two processes that cannot find each other; each
/// would train alone into the same files. They refuse, and write nothing.
#[test]
#[ignore = "needs root: starts a single-node Slurm (./scripts/test.sh runs it)"]
fn srun_without_an_mpi_plugin_is_refused_before_anything_is_written() {
    local_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let run = tmp.path().join("r");
    let out = std::process::Command::new("srun")
        .args(["--ntasks=2", "--mpi=none", env!("CARGO_BIN_EXE_incubator")])
        .args(["meta", "-c", &cfg, "-d", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(
        err.matches("started by srun as one of 2 tasks, but without an MPI plugin")
            .count(),
        2,
        "{err}"
    );
    assert!(err.contains("srun --mpi=pmix"), "{err}");
    assert!(!run.exists(), "nothing written");
}

/// The same signals to incubations of 2 srun tasks each (one after the other on the two
/// cores): the time-limit warning reaches the batch step's srun, which forwards it to both
/// ranks; they stop at one step, rank 0 saves and requeues the job. A requeue by an
/// administrator stops both ranks by SIGTERM. Both resume as 2 ranks to mpirun's bytes.
#[test]
#[ignore = "needs root and Open MPI with --features mpi: starts a single-node Slurm (./scripts/test.sh runs it)"]
fn incubations_of_two_tasks_requeued_or_time_limited_resume_to_the_2_rank_bytes() {
    local_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        &format!("{LONG_INCUBATIONS}[slurm.incubate]\ntasks_per_stage = 2\n"),
    );
    let run = tmp.path().join("cluster");
    submit(&cfg, &run);
    let array = incubate_array(&run);
    // the tasks run one at a time, in either order: each is signalled while it trains
    let first = loop {
        if let Some(m) = (0..2).find(|&m| train_steps(&run, &format!("incubate-{m}")) >= 20) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let second = 1 - first;
    slurm(&[
        "scancel",
        "--signal=USR1",
        "--batch",
        &format!("{array}_{first}"),
    ]);
    // the other task starts while the first waits in the queue (10 s for its credential)
    wait_for_steps(&run, &format!("incubate-{second}"), 20);
    slurm(&["scontrol", "requeue", &format!("{array}_{second}")]);
    wait_until_requeued_and_running(&[format!("{array}_{first}"), format!("{array}_{second}")]);
    wait_for_jobs(&run);

    let (usr1, term) = (
        resumed_log(&run, &array, first),
        resumed_log(&run, &array, second),
    );
    wait_for_jobs(&run);
    // both ranks stopped, at one step; rank 0 requeued the job once
    let stops = |log: &str, signal: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.starts_with(&format!("stopped by {signal}")))
            .map(str::to_string)
            .collect()
    };
    let s1 = stops(&usr1, "SIGUSR1");
    assert_eq!(s1.len(), 2, "{usr1}");
    assert_eq!(
        usr1.matches(&format!("job {array}_{first} requeued"))
            .count(),
        1,
        "{usr1}"
    );
    assert!(
        usr1.contains(&format!("[incubate-{first}] resuming at epoch")),
        "{usr1}"
    );
    assert!(
        term.contains(&format!("[incubate-{second}] resuming at epoch")),
        "{term}"
    );
    // a requeue also stops the batch step's srun, which can stop forwarding a rank's output
    // before that rank's line arrives (seen once, 2026-12-05: one "stopped by SIGTERM" line,
    // and srun's report of task 1 exiting with 143, the code of that stop): every task srun
    // reports ended by the stop (none killed, none failed), and at least one line says so
    assert!(!stops(&term, "SIGTERM").is_empty(), "{term}");
    for report in term
        .lines()
        .filter(|l| l.contains("srun: error:") && l.contains(": task "))
    {
        assert!(
            report.ends_with("Exited with exit code 143"),
            "{report}\n{term}"
        );
    }
    for m in [0, 1] {
        let interrupted = events(&run, &format!("incubate-{m}"))
            .iter()
            .filter(|r| matches!(r.event, Event::StageInterrupted { .. }))
            .count();
        assert_eq!(interrupted, 1, "incubate-{m} was interrupted once");
    }

    // the same stages here: the meta model by one process, the incubations and the assembly
    // as 2 ranks under mpirun
    let local = tmp.path().join("local");
    let local_dir = local.to_str().unwrap();
    assert_ok(
        &incubator(&["meta", "-c", &cfg, "-d", local_dir, "--no-progress"]),
        "local meta",
    );
    for m in ["0", "1"] {
        let args = ["incubate", "--module", m, "-c", &cfg, "-d", local_dir];
        assert_ok(&mpirun(2, &args, None), "local incubation as 2 ranks");
    }
    assert_ok(
        &incubator(&["assemble", "-c", &cfg, "-d", local_dir, "--no-progress"]),
        "local assembly",
    );
    assert_same_models(&local, &run, "requeued 2-task incubations against mpirun's");
}

/// A sweep's runs take the rank count from the sweep like any other key: every stage's job
/// of every run starts its ranks with srun.
#[test]
fn a_sweep_sets_the_processes_of_its_runs_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tiny.toml");
    let spec = tmp.path().join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            "[sweep]\nconfigs = [\"{tiny}\"]\nseeds = [0, 1]\n[sweep.set]\n\"slurm.default.tasks_per_stage\" = 2\n[grid]\n\"optim.base_lr\" = [0.032]\n"
        ),
    )
    .unwrap();
    let dir = tmp.path().join("sweep");
    let out = incubator(&[
        "sweep",
        "submit",
        spec.to_str().unwrap(),
        "-d",
        dir.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_ok(&out, "sweep submit --dry-run");
    let text = String::from_utf8_lossy(&out.stdout);
    // 2 runs x (meta, the incubation array, assemble, e2e)
    assert_eq!(text.matches("#SBATCH --ntasks=2\n").count(), 8, "{text}");
    assert_eq!(
        text.matches("exec srun --ntasks=2 --kill-on-bad-exit=1 --mpi=pmix ")
            .count(),
        8,
        "{text}"
    );
}
