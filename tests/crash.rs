//! Crash consistency on the real binary: every kind of stage (meta, an incubation under each
//! reference strategy, assemble, e2e) is killed with SIGKILL at several points (before its
//! first checkpoint, after one, in the middle of a file write), run again until it finishes,
//! and must end with the same bytes as an uninterrupted run.
//!
//! Last, each stage is stopped once by SIGTERM (finish the step, save, exit 143) before the
//! run that finishes it.
//!
//! The kill points come from `INCUBATOR_CRASH_AT` (core/src/faults.rs): the process SIGKILLs
//! itself after a given optimizer step or halfway through a given file write, points that a
//! timed external `kill -9` would only hit by luck. They are drawn from a seeded generator
//! (`INCUBATOR_CRASH_SEED` to try others); each is printed, so a failure names its schedule.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

/// [`STRATEGY_RUN`] with a state every 5 steps and after each epoch (steps 5, 8, 10, 15, 16).
const CHECKPOINTS: &str = "[checkpoint]\nevery_steps = 5\n";
const STEPS: u64 = 16;
const FIRST_CHECKPOINT: u64 = 5;

fn config_for(dir: &Path, library: Option<&str>, plugins: &str) -> String {
    strategy_config(
        dir,
        &format!("{STRATEGY_RUN}{CHECKPOINTS}"),
        library,
        plugins,
    )
}

fn stage_command(stage: &str, cfg: &str, run: &Path, crash_at: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_incubator"));
    cmd.args(stage_args(stage, cfg, run));
    cmd.env_remove("INCUBATOR_CRASH_AT");
    if let Some(at) = crash_at {
        cmd.env("INCUBATOR_CRASH_AT", at);
    }
    cmd
}

/// The summary's numbers that must not depend on interruptions (wall time and host may).
fn outcome(run: &Path, stage: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("stages").join(stage).join("summary.json"))
        .unwrap_or_else(|e| panic!("{stage} has no summary: {e}"));
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let o = v.as_object_mut().unwrap();
    for volatile in ["wall_s", "host", "finished_at"] {
        o.remove(volatile);
    }
    // a teacher's wall time is its own stage's, measured in another process
    for t in o
        .get_mut("teachers")
        .and_then(|t| t.as_array_mut())
        .into_iter()
        .flatten()
    {
        t.as_object_mut().unwrap().remove("wall_s");
    }
    v
}

#[test]
fn every_stage_of_every_strategy_killed_at_any_point_resumes_to_the_uninterrupted_bytes() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crash_seed());
    for (name, library, plugins) in strategies() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config_for(tmp.path(), library, plugins);
        let reference = tmp.path().join("reference");
        let out = incubator(&[
            "run",
            "--jobs",
            "1",
            "-c",
            &cfg,
            "-d",
            reference.to_str().unwrap(),
        ]);
        assert_ok(&out, &format!("{name}: uninterrupted run"));

        let crashed = tmp.path().join("crashed");
        for (stage, trains) in stages_of(name) {
            if !trains {
                let out = stage_command(stage, &cfg, &crashed, None).output().unwrap();
                assert_ok(&out, &format!("{name} {stage} (trains nothing)"));
                assert_eq!(outcome(&crashed, stage), outcome(&reference, stage));
                continue;
            }
            // Each point is reached whatever the earlier ones left: the stage has 16 steps.
            let schedule = [
                // before the first checkpoint: nothing saved yet
                format!("step:{}", rng.gen_range(1..FIRST_CHECKPOINT)),
                // a graceful stop (SIGTERM through the real handler) between periodic states
                format!("term:{}", rng.gen_range(1..FIRST_CHECKPOINT)),
                // after a checkpoint (the stop's state, maybe periodic ones too)
                format!("step:{}", rng.gen_range(1..STEPS / 2)),
                // halfway through a file: a state, the stage's result, or its summary
                format!("write:{}", rng.gen_range(1..=3)),
            ];
            for at in &schedule {
                let out = stage_command(stage, &cfg, &crashed, Some(at))
                    .output()
                    .unwrap();
                if at.starts_with("term:") {
                    assert_eq!(
                        out.status.code(),
                        Some(143),
                        "{name} {stage}: SIGTERM ends with 128 + 15:\n{}",
                        stderr(&out)
                    );
                    let e = stderr(&out);
                    assert!(
                        e.contains("stopped by SIGTERM")
                            && e.contains("its state is saved in")
                            && e.contains("Run the same command again to resume"),
                        "{name} {stage}: {e}"
                    );
                    continue;
                }
                assert_eq!(
                    out.status.signal(),
                    Some(9),
                    "{name} {stage} with INCUBATOR_CRASH_AT={at} was not killed (seed {}):\n{}",
                    crash_seed(),
                    stderr(&out)
                );
                assert_not_finished(&crashed, stage, &format!("{name} {stage}"));
            }
            let out = stage_command(stage, &cfg, &crashed, None).output().unwrap();
            assert_ok(
                &out,
                &format!(
                    "{name} {stage} after kills at {schedule:?} (seed {})",
                    crash_seed()
                ),
            );
            assert!(
                stderr(&out).contains("resuming at epoch"),
                "{name} {stage}: the last run should resume from a saved state:\n{}",
                stderr(&out)
            );
            assert_eq!(
                outcome(&crashed, stage),
                outcome(&reference, stage),
                "{name} {stage}: the resumed stage's results differ (kills at {schedule:?})"
            );
        }
        assert_same_models(
            &reference,
            &crashed,
            &format!("{name}, against the uninterrupted run"),
        );
        let leftovers: Vec<_> = walk(&crashed)
            .into_iter()
            .filter(|p| p.contains(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{name}: temporary files left: {leftovers:?}"
        );
        eprintln!("{name}: every stage resumed to the uninterrupted bytes");
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
