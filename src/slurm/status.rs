//! `incubator slurm status RUN_DIR`: each stage's job, its state in Slurm and its result in the
//! run directory; a failed stage with its error and log.

use super::read_submitted;
use incubator_core::events::{Event, StageId};
use incubator_core::stages::plan::StagePlan;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Slurm's view of one job (or array task): state and reason, from `scontrol show job`.
fn slurm_states(job: &str) -> BTreeMap<Option<usize>, (String, String)> {
    let Ok(o) = Command::new("scontrol")
        .args(["show", "job", "-o", job])
        .output()
    else {
        return BTreeMap::new();
    };
    parse_show_job(&String::from_utf8_lossy(&o.stdout))
}

/// One entry per array task (or `None` for a plain job). Tasks that have not started share
/// one record whose `ArrayTaskId` is a list of ranges (`2-3,5%2`); each task gets it.
fn parse_show_job(text: &str) -> BTreeMap<Option<usize>, (String, String)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        let state = field("JobState").unwrap_or_else(|| "?".into());
        let reason = field("Reason").filter(|r| r != "None").unwrap_or_default();
        match field("ArrayTaskId") {
            Some(ids) => {
                for task in task_ids(&ids) {
                    out.insert(Some(task), (state.clone(), reason.clone()));
                }
            }
            None => {
                out.insert(None, (state, reason));
            }
        }
    }
    out
}

/// `2-3,5%2` -> [2, 3, 5] (the `%N` is the array's throttle).
fn task_ids(spec: &str) -> Vec<usize> {
    let spec = spec.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.split(':').next().unwrap_or(""); // `1-7:2` steps are not ours
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// For a job Slurm has forgotten: its accounting record (`sacct`, where the cluster keeps
/// one), else the line slurmstepd writes into the job's log when it ends a job.
fn finished_state(job_id: &str, log: Option<&Path>) -> Option<String> {
    if let Ok(o) = Command::new("sacct")
        .args(["-n", "-X", "-P", "-o", "State", "-j", job_id])
        .output()
    {
        let text = String::from_utf8_lossy(&o.stdout);
        if let Some(state) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
            if o.status.success() {
                return Some(format!("{state} (from sacct)"));
            }
        }
    }
    let text = std::fs::read_to_string(log?).ok()?;
    // slurmstepd: error: *** JOB 12 ON node CANCELLED AT 2026-11-30T12:00:00 DUE TO TIME LIMIT ***
    text.lines().rev().find_map(|l| {
        let at = l.find("*** JOB ").or_else(|| l.find("*** STEP "))?;
        let words: Vec<&str> = l[at..].split_whitespace().collect();
        let state = words.get(5)?;
        let due = l
            .find(" DUE TO ")
            .map(|d| l[d + 8..].trim_end_matches('*').trim().to_lowercase());
        Some(match due {
            Some(why) => format!("{state} ({why}; from the job's log)"),
            None => format!("{state} (from the job's log)"),
        })
    })
}

/// How the stage's last process ended, when it did not finish: its error, or the signal that
/// stopped it (`None` when the last record is a start: it is running, or was killed).
fn last_stop(run: &Path, stage: StageId) -> Option<String> {
    let text =
        std::fs::read_to_string(run.join("events").join(format!("{}.jsonl", stage.slug()))).ok()?;
    text.lines().rev().find_map(
        |l| match serde_json::from_str::<incubator_core::events::Record>(l)
            .ok()?
            .event
        {
            Event::StageFailed { error } => Some(Some(format!("FAILED: {error}"))),
            Event::StageInterrupted { signal, .. } => Some(Some(format!(
                "interrupted by {signal}, state saved; resumes when run again"
            ))),
            Event::StageStarted { .. } => Some(None),
            _ => None,
        },
    )?
}

pub struct Row {
    pub stage: String,
    pub job: String,
    /// Processes (data-parallel ranks) the stage's job trains it with.
    pub ranks: u32,
    pub state: String,
    pub result: String,
    pub log: Option<PathBuf>,
}

/// One row per stage of `plan`, in its order.
pub fn rows(run: &Path, plan: &StagePlan) -> anyhow::Result<Vec<Row>> {
    let submitted = read_submitted(run);
    let logs = run.join("slurm").join("logs");
    let stages = plan.stages().iter().map(|s| s.id);
    let mut cache: BTreeMap<String, BTreeMap<Option<usize>, (String, String)>> = BTreeMap::new();
    let mut out = Vec::new();
    for id in stages {
        let slug = id.slug();
        // the job that ran this stage: its own, or the incubation array's task
        let (job_name, task) = match id.module {
            Some(m)
                if submitted
                    .arrays
                    .get("incubate")
                    .is_some_and(|a| a.contains(&m)) =>
            {
                ("incubate".to_string(), Some(m))
            }
            _ => (slug.clone(), None),
        };
        let job = submitted.jobs.get(&job_name).cloned();
        let log = job.as_ref().map(|j| match task {
            Some(m) => logs.join(format!("{job_name}-{m}-{j}.out")),
            None => logs.join(format!("{job_name}-{j}.out")),
        });
        let (state, reason) = match &job {
            None => ("-".to_string(), String::new()),
            Some(j) => {
                let states = cache.entry(j.clone()).or_insert_with(|| slurm_states(j));
                let id = match task {
                    Some(m) => format!("{j}_{m}"),
                    None => j.clone(),
                };
                states
                    .get(&task)
                    .cloned()
                    .or_else(|| states.get(&None).cloned())
                    .or_else(|| finished_state(&id, log.as_deref()).map(|s| (s, String::new())))
                    .unwrap_or_else(|| {
                        (
                            "unknown (no longer in Slurm, no accounting record, nothing in its log)"
                                .into(),
                            String::new(),
                        )
                    })
            }
        };
        let summary_path = run.join("stages").join(&slug).join("summary.json");
        let summary: Option<serde_json::Value> = std::fs::read(&summary_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let result = match (&summary, last_stop(run, id)) {
            (Some(s), _) => format!(
                "finished, top-1 {:.2}%",
                100.0 * s["top1"].as_f64().unwrap_or(f64::NAN)
            ),
            (None, Some(stop)) => stop,
            (None, None)
                if state.starts_with("FAILED")
                    || state.starts_with("CANCELLED")
                    || state.starts_with("TIMEOUT")
                    || state.starts_with("OUT_OF_MEMORY") =>
            {
                format!(
                    "not finished ({state}{})",
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(", {reason}")
                    }
                )
            }
            (None, None) => "not finished".into(),
        };
        let job_label = match (&job, task) {
            (Some(j), Some(m)) => format!("{j}_{m}"),
            (Some(j), None) => j.clone(),
            (None, _) => "-".into(),
        };
        let state = if reason.is_empty() {
            state
        } else {
            format!("{state} ({reason})")
        };
        out.push(Row {
            stage: slug,
            ranks: submitted.tasks.get(&job_name).copied().unwrap_or(1),
            job: job_label,
            state,
            result,
            log,
        });
    }
    Ok(out)
}

pub fn print(run: &Path, plan: &StagePlan) -> anyhow::Result<()> {
    outln!("| stage | job | ranks | Slurm state | result | log |");
    outln!("|---|---|---|---|---|---|");
    for r in rows(run, plan)? {
        let log = match &r.log {
            Some(l)
                if r.result.starts_with("FAILED")
                    || r.result.starts_with("interrupted")
                    || r.result.starts_with("not finished") =>
            {
                l.display().to_string()
            }
            _ => String::new(),
        };
        outln!(
            "| {} | {} | {} | {} | {} | {} |",
            r.stage,
            r.job,
            r.ranks,
            r.state,
            r.result,
            log
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_array_tasks_share_one_record_and_each_gets_its_state() {
        let text = "JobId=40 ArrayJobId=38 ArrayTaskId=0 JobState=COMPLETED Reason=None\n\
                    JobId=38 ArrayJobId=38 ArrayTaskId=2-3,5%2 JobState=CANCELLED Reason=Dependency\n";
        let states = parse_show_job(text);
        assert_eq!(states[&Some(0)].0, "COMPLETED");
        for t in [2, 3, 5] {
            assert_eq!(states[&Some(t)], ("CANCELLED".into(), "Dependency".into()));
        }
        assert!(!states.contains_key(&Some(4)));
        assert_eq!(task_ids("7"), vec![7]);
    }

    #[test]
    fn a_forgotten_job_is_read_from_the_line_slurm_leaves_in_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("incubate-2-38.out");
        std::fs::write(
            &log,
            "[incubate-2] epoch 1/3\nslurmstepd: error: *** JOB 41 ON vm CANCELLED AT 2026-11-30T12:00:00 DUE TO TIME LIMIT ***\n",
        )
        .unwrap();
        assert_eq!(
            finished_state("nonexistent_job_for_this_test", Some(&log)).unwrap(),
            "CANCELLED (time limit; from the job's log)"
        );
        std::fs::write(
            &log,
            "slurmstepd: error: *** JOB 41 ON vm CANCELLED AT 2026-11-30T12:00:00 ***\n",
        )
        .unwrap();
        assert_eq!(
            finished_state("nonexistent_job_for_this_test", Some(&log)).unwrap(),
            "CANCELLED (from the job's log)"
        );
    }
}
