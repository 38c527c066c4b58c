//! Data-parallel stages: the real binary as 2 MPI ranks under Open MPI's `mpirun`, against one
//! process. Needs `mpirun` and a build with `--features mpi` (`./scripts/test.sh` has both).

mod common;
use common::*;
use std::path::Path;

/// The tiny run's meta stage for `steps` optimizer steps of `batch` images a rank, without
/// augmentation (its random draws differ between a batch of 2b and two of b) and warm-up.
fn meta_config(dir: &Path, batch: usize, steps: usize) -> String {
    let text = with_keys(
        TINY,
        &[
            ("augment.reprob", "0.0"),
            ("optim.batch_size", &batch.to_string()),
            ("meta.steps", &steps.to_string()),
            ("meta.warmup_epochs", "0"),
        ],
    );
    write_config(dir, &format!("{text}\n[checkpoint]\nevery_steps = 1\n"))
}

fn meta_model(run: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    model_files(run)
        .into_iter()
        .filter(|(name, _)| name == "meta/model.safetensors")
        .flat_map(|(_, bytes)| {
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            st.tensors()
                .into_iter()
                .map(|(name, t)| {
                    let v = t
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    (name, v)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `ranks` ranks of batch 16 against one process of batch `ranks` x 16, after 4 steps.
fn n_ranks_against_one(ranks: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let (one, many) = (tmp.path().join("one"), tmp.path().join("many"));
    let (dir1, dir2) = (tmp.path().join("c1"), tmp.path().join("c2"));
    std::fs::create_dir_all(&dir1).unwrap();
    std::fs::create_dir_all(&dir2).unwrap();
    let steps = 4;
    let batch = 16 * ranks;
    let out = incubator(&[
        "meta",
        "-c",
        &meta_config(&dir1, batch, steps),
        "-d",
        one.to_str().unwrap(),
    ]);
    assert_ok(&out, "one rank");
    let cfg2 = meta_config(&dir2, 16, steps);
    let out = mpirun(
        ranks,
        &["meta", "-c", &cfg2, "-d", many.to_str().unwrap()],
        None,
    );
    assert_ok(&out, &format!("{ranks} ranks"));
    let (a, b) = (meta_model(&one), meta_model(&many));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    // Both sum the same per-sample gradients (rank r's batch holds positions r, r+N, ... of
    // the epoch's order; together the positions of the one process's batch), in another
    // order (one sum against N sums, averaged), so they differ in the last bits. AdamW divides
    // each gradient by its own running RMS: where a gradient is near zero (near eps), a
    // last-bit difference becomes a visible part of that element's step. So: nearly every
    // element within float rounding, and none further than a thousandth of the farthest 4
    // steps can move it (4 x peak lr).
    let peak_lr = 0.032 * batch as f64 / 512.0;
    let diffs: Vec<f32> = a
        .iter()
        .flat_map(|(k, va)| va.iter().zip(&b[k]).map(|(x, y)| (x - y).abs()))
        .collect();
    let worst = diffs.iter().cloned().fold(0.0f32, f32::max);
    let loose = diffs.iter().filter(|d| **d > 1e-7).count() as f64 / diffs.len() as f64;
    eprintln!("{ranks} ranks: worst difference {worst:e}, {loose} of the elements beyond 1e-7");
    assert!(
        worst as f64 <= 1e-3 * steps as f64 * peak_lr,
        "{ranks} ranks: worst {worst}"
    );
    assert!(
        loose < 0.01,
        "{ranks} ranks: {loose} of the elements differ by more than 1e-7"
    );
    // the same work counted, the same steps taken
    let summary = |run: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join("stages/meta/summary.json")).unwrap())
            .unwrap()
    };
    let (s1, s2) = (summary(&one), summary(&many));
    assert_eq!(s1["steps"], s2["steps"]);
    let (g1, g2) = (
        s1["train_gflop"].as_f64().unwrap(),
        s2["train_gflop"].as_f64().unwrap(),
    );
    assert!((g1 - g2).abs() <= 1e-9 * g1, "{g1} against {g2} GFLOP");
}

#[test]
#[ignore = "needs Open MPI's mpirun and a build with --features mpi (./scripts/test.sh)"]
fn two_ranks_of_batch_b_train_as_one_rank_of_batch_2b() {
    n_ranks_against_one(2);
}

/// An odd count: the tiny run's training images (1024 less the validation tenth) do not
/// split evenly over 3 ranks, and the shards are padded by wrapping; the padding is at the
/// epoch's end, not in these first steps.
#[test]
#[ignore = "needs Open MPI's mpirun and a build with --features mpi (./scripts/test.sh)"]
fn three_ranks_of_batch_b_train_as_one_rank_of_batch_3b() {
    n_ranks_against_one(3);
}

#[test]
#[ignore = "needs Open MPI's mpirun and a build with --features mpi (./scripts/test.sh)"]
fn two_rank_runs_repeat_bit_for_bit_and_only_rank_0_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = meta_config(tmp.path(), 16, 6);
    let mut files = Vec::new();
    for name in ["a", "b"] {
        let run = tmp.path().join(name);
        let out = mpirun(2, &["meta", "-c", &cfg, "-d", run.to_str().unwrap()], None);
        assert_ok(&out, name);
        // one writer: the stage's events once, its progress printed once
        let events = std::fs::read_to_string(run.join("events/meta.jsonl")).unwrap();
        let started = events
            .lines()
            .filter(|l| l.contains("\"event\":\"stage_started\""))
            .count();
        assert_eq!(started, 1, "{events}");
        let err = stderr(&out);
        assert_eq!(err.matches("[meta] test top-1").count(), 1, "{err}");
        // rank 0 says how much of its step the all-reduce took (scripts/bench-ranks.sh reads it)
        let share = err
            .lines()
            .filter(|l| l.contains("of rank 0's step time in the gradients' all-reduce"))
            .collect::<Vec<_>>();
        assert_eq!(share.len(), 1, "{err}");
        assert!(share[0].starts_with("[meta] 2 ranks: "), "{err}");
        files.push(model_files(&run));
    }
    assert_eq!(files[0], files[1]);
    // each rank evaluated half the test split, and the sums make the whole split's result:
    // the same as one process evaluating all of it (the loss's sum in another order)
    let run = tmp.path().join("a");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("stages/meta/summary.json")).unwrap())
            .unwrap();
    let out = incubator(&["eval", "-d", run.to_str().unwrap(), "--model", "meta"]);
    assert_ok(&out, "eval by one process");
    let whole: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("eval/meta-embedded-mnist-test/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["top1"], whole["top1"]);
    assert_eq!(summary["top5"], whole["top5"]);
    let (a, b) = (
        summary["test_loss"].as_f64().unwrap(),
        whole["loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-12 * b.abs(), "loss {a} against {b}");
}

/// The meta stage of `cfg` as 2 ranks, uninterrupted, in `dir/whole`.
fn uninterrupted(dir: &Path, cfg: &str) -> std::path::PathBuf {
    let whole = dir.join("whole");
    let out = mpirun(2, &["meta", "-c", cfg, "-d", whole.to_str().unwrap()], None);
    assert_ok(&out, "uninterrupted");
    whole
}

#[test]
#[ignore = "needs Open MPI's mpirun and a build with --features mpi (./scripts/test.sh)"]
fn a_signal_to_one_rank_stops_both_at_one_step_and_they_resume_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = meta_config(tmp.path(), 16, 8);
    let whole = uninterrupted(tmp.path(), &cfg);
    let run = tmp.path().join("stopped");
    let args = ["meta", "-c", &cfg, "-d", run.to_str().unwrap()];
    // SIGTERM reaches rank 1 alone, after its third step
    let out = mpirun(2, &args, Some((1, "INCUBATOR_CRASH_AT=term:3")));
    assert!(!out.status.success(), "the stop ends the command");
    let err = stderr(&out);
    // both ranks, at the same step
    let stops: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("stopped by SIGTERM"))
        .collect();
    assert_eq!(stops.len(), 2, "{err}");
    assert!(
        stops.iter().all(|l| l.contains("at epoch 1 step 3/")),
        "{err}"
    );
    assert!(!run.join("stages/meta/summary.json").exists());
    let state = std::fs::read(run.join("stages/meta/state.safetensors")).unwrap();
    let meta = safetensors::SafeTensors::read_metadata(&state).unwrap().1;
    let st: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["incubator.train_state"]).unwrap();
    assert_eq!(st["step_in_epoch"], 3, "{st}");
    assert_eq!(st["ranks"], 2, "{st}");
    // resumed with as many ranks: the uninterrupted run's files
    assert_ok(&mpirun(2, &args, None), "resumed");
    assert_same_models(&whole, &run, "resumed after the stop");
    // a state written by 2 ranks is not resumed by 1
    let one = tmp.path().join("one");
    let out = mpirun(
        2,
        &["meta", "-c", &cfg, "-d", one.to_str().unwrap()],
        Some((1, "INCUBATOR_CRASH_AT=term:2")),
    );
    assert!(!out.status.success());
    let out = incubator(&["meta", "-c", &cfg, "-d", one.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("written by 2 rank(s) training together, this run has 1")
            && err.contains("mpirun -np 2"),
        "{err}"
    );
}

#[test]
#[ignore = "needs Open MPI's mpirun and a build with --features mpi (./scripts/test.sh)"]
fn a_rank_killed_anywhere_leaves_a_stage_that_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = meta_config(tmp.path(), 16, 8);
    let whole = uninterrupted(tmp.path(), &cfg);
    // SIGKILL (no unwinding) of either rank after a step, and of rank 0 inside a state file
    // it writes; mpirun then ends the other rank
    for (rank, at) in [(1, "step:2"), (0, "step:5"), (0, "write:4"), (1, "step:7")] {
        let run = tmp
            .path()
            .join(format!("killed-{rank}-{}", at.replace(':', "-")));
        let args = ["meta", "-c", &cfg, "-d", run.to_str().unwrap()];
        let out = mpirun(2, &args, Some((rank, &format!("INCUBATOR_CRASH_AT={at}"))));
        assert!(!out.status.success(), "rank {rank} killed at {at}");
        let resumed = mpirun(2, &args, None);
        assert_ok(
            &resumed,
            &format!("resuming after rank {rank} killed at {at}"),
        );
        assert_same_models(&whole, &run, &format!("rank {rank} killed at {at}"));
    }
}

/// [`STRATEGY_RUN`] with `batch` images a rank and no augmentation (its draws differ between
/// one batch of 2b and two of b), under a strategy; a state every 5 steps (steps 5, 8, 10,
/// 15, 16 of each stage's 16), which changes no number.
fn ranks_config(dir: &Path, batch: usize, plugin: Option<&str>, plugins: &str) -> String {
    let base = replaced(
        STRATEGY_RUN,
        "batch_size = 32",
        &format!("batch_size = {batch}"),
    );
    strategy_config(
        dir,
        &format!("{base}[augment]\nreprob = 0.0\n[checkpoint]\nevery_steps = 5\n"),
        plugin,
        plugins,
    )
}

/// Where a stage of 2 ranks dies, drawn from `rng`: first before its first periodic state
/// (SIGKILL after a step, or SIGTERM through the real handler, to either rank), then after
/// one (SIGKILL to either rank after a step, or to rank 0, the writer, halfway through a file
/// it writes: a state, the stage's result or its summary). Each point is reached whatever
/// the earlier one left: the stage has 16 steps.
fn kill_points(rng: &mut impl rand::Rng) -> [(usize, String); 2] {
    let first = match rng.gen_range(0..2) {
        0 => format!("step:{}", rng.gen_range(1..5)),
        _ => format!("term:{}", rng.gen_range(1..5)),
    };
    let second = match rng.gen_range(0..3) {
        0 => (0, format!("write:{}", rng.gen_range(1..=3))),
        r => (r - 1, format!("step:{}", rng.gen_range(1..8))),
    };
    [(rng.gen_range(0..2), first), second]
}

/// Every kind of stage (meta, each incubation, assemble, e2e; m2mKD's teacher) under every
/// reference strategy trains as 2 ranks: the whole run finishes, each stage's events are
/// written once, and each stage takes the steps and counts the compute of one rank with twice
/// the batch (the extra networks' passes on every rank included). Then each stage of the same
/// run as 2 ranks is killed at two points drawn from a seeded generator, and resumes to the
/// uninterrupted 2-rank run's bytes.
#[test]
#[ignore = "needs Open MPI's mpirun and a build with --features mpi (./scripts/test.sh)"]
fn every_stage_of_every_strategy_trains_as_two_ranks_and_resumes_from_kills_anywhere() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crash_seed());
    let tmp = tempfile::tempdir().unwrap();
    for (name, lib, plugins) in strategies() {
        let dir = tmp.path().join(name);
        let (c1, c2) = (dir.join("c1"), dir.join("c2"));
        std::fs::create_dir_all(&c1).unwrap();
        std::fs::create_dir_all(&c2).unwrap();
        let (one, two) = (dir.join("one"), dir.join("two"));
        let cfg1 = ranks_config(&c1, 32, lib, plugins);
        let out = incubator(&["run", "-c", &cfg1, "-d", one.to_str().unwrap()]);
        assert_ok(&out, &format!("{name}, one rank"));
        let cfg2 = ranks_config(&c2, 16, lib, plugins);
        let out = mpirun(2, &["run", "-c", &cfg2, "-d", two.to_str().unwrap()], None);
        assert_ok(&out, &format!("{name}, two ranks"));
        let mut stages = 0;
        for entry in std::fs::read_dir(one.join("stages")).unwrap() {
            let stage = entry.unwrap().file_name().to_string_lossy().to_string();
            let summary = |run: &Path| -> serde_json::Value {
                let path = run.join("stages").join(&stage).join("summary.json");
                let text = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("{name}: {}: {e}", path.display()));
                serde_json::from_slice(&text).unwrap()
            };
            let (s1, s2) = (summary(&one), summary(&two));
            assert_eq!(s1["steps"], s2["steps"], "{name} {stage}");
            let (g1, g2) = (
                s1["train_gflop"].as_f64().unwrap(),
                s2["train_gflop"].as_f64().unwrap(),
            );
            assert!(
                (g1 - g2).abs() <= 1e-9 * g1.max(1.0),
                "{name} {stage}: {g1} against {g2} GFLOP"
            );
            if s1["steps"].as_u64().unwrap() > 0 {
                let events =
                    std::fs::read_to_string(two.join("events").join(format!("{stage}.jsonl")))
                        .unwrap();
                let started = events
                    .lines()
                    .filter(|l| l.contains("\"event\":\"stage_started\""))
                    .count();
                assert_eq!(started, 1, "{name} {stage}");
            }
            stages += 1;
        }
        assert!(stages >= 4, "{name}: {stages} stages");

        let crashed = dir.join("crashed");
        for (stage, trains) in stages_of(name) {
            let args = stage_args(stage, &cfg2, &crashed);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let schedule = if trains {
                kill_points(&mut rng).to_vec()
            } else {
                Vec::new()
            };
            for (rank, at) in &schedule {
                let out = mpirun(2, &args, Some((*rank, &format!("INCUBATOR_CRASH_AT={at}"))));
                assert!(
                    !out.status.success(),
                    "{name} {stage}: rank {rank} at {at} did not stop it (seed {})",
                    crash_seed()
                );
                assert_not_finished(&crashed, stage, &format!("{name} {stage}"));
            }
            let out = mpirun(2, &args, None);
            assert_ok(
                &out,
                &format!("{name} {stage} after {schedule:?} (seed {})", crash_seed()),
            );
        }
        assert_same_models(
            &two,
            &crashed,
            &format!(
                "{name}: stages killed at random points (seed {})",
                crash_seed()
            ),
        );
        eprintln!("{name}: every stage as 2 ranks resumed to the uninterrupted bytes");
    }
}

/// Only the training commands train as ranks; N copies of anything else (a sweep, an
/// evaluation, a submission) would each do all of it into the same files.
#[test]
#[ignore = "needs Open MPI's mpirun and a build with --features mpi (./scripts/test.sh)"]
fn other_commands_started_as_several_processes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweep");
    let out = mpirun(2, &["sweep", "report", "-d", sweep.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("started as one of 2 processes")
            && err.contains("only the training commands (run, meta, incubate, assemble, e2e)"),
        "{err}"
    );
    assert!(!sweep.exists(), "nothing written");
}
