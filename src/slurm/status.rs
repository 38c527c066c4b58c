//! `incubator slurm status RUN_DIR`: each stage's job, its state in Slurm and its result in the
//! run directory; a failed stage with its error and log.

use super::read_submitted;
use incubator_core::events::{Event, StageId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Slurm's view of one job (or array task): state and reason, from `scontrol show job`.
fn slurm_states(job: &str) -> BTreeMap<Option<usize>, (String, String)> {
    let mut out = BTreeMap::new();
    let Ok(o) = Command::new("scontrol")
        .args(["show", "job", "-o", job])
        .output()
    else {
        return out;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        let task = field("ArrayTaskId").and_then(|t| t.parse().ok());
        let state = field("JobState").unwrap_or_else(|| "?".into());
        let reason = field("Reason").filter(|r| r != "None").unwrap_or_default();
        out.insert(task, (state, reason));
    }
    out
}

fn last_error(run: &Path, stage: StageId) -> Option<String> {
    let text =
        std::fs::read_to_string(run.join("events").join(format!("{}.jsonl", stage.slug()))).ok()?;
    text.lines().rev().find_map(|l| {
        match serde_json::from_str::<incubator_core::events::Record>(l)
            .ok()?
            .event
        {
            Event::StageFailed { error } => Some(error),
            _ => None,
        }
    })
}

pub struct Row {
    pub stage: String,
    pub job: String,
    pub state: String,
    pub result: String,
    pub log: Option<PathBuf>,
}

pub fn rows(run: &Path, k: usize, e2e: bool) -> anyhow::Result<Vec<Row>> {
    let submitted = read_submitted(run);
    let logs = run.join("slurm").join("logs");
    let mut stages = vec![StageId::META];
    stages.extend((0..k).map(StageId::incubate));
    stages.push(StageId::ASSEMBLE);
    if e2e {
        stages.push(StageId::E2E);
    }
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
        let (state, reason) = match &job {
            None => ("-".to_string(), String::new()),
            Some(j) => {
                let states = cache.entry(j.clone()).or_insert_with(|| slurm_states(j));
                states
                    .get(&task)
                    .cloned()
                    .or_else(|| states.get(&None).cloned())
                    .unwrap_or_else(|| ("unknown (no longer in Slurm)".into(), String::new()))
            }
        };
        let summary_path = run.join("stages").join(&slug).join("summary.json");
        let summary: Option<serde_json::Value> = std::fs::read(&summary_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let log = job.as_ref().map(|j| match task {
            Some(m) => logs.join(format!("{job_name}-{m}-{j}.out")),
            None => logs.join(format!("{job_name}-{j}.out")),
        });
        let result = match (&summary, last_error(run, id)) {
            (Some(s), _) => format!(
                "finished, top-1 {:.2}%",
                100.0 * s["top1"].as_f64().unwrap_or(f64::NAN)
            ),
            (None, Some(e)) => format!("FAILED: {e}"),
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
            job: job_label,
            state,
            result,
            log,
        });
    }
    Ok(out)
}

pub fn print(run: &Path, k: usize, e2e: bool) -> anyhow::Result<()> {
    println!("| stage | job | Slurm state | result | log |");
    println!("|---|---|---|---|---|");
    for r in rows(run, k, e2e)? {
        let log = match &r.log {
            Some(l) if r.result.starts_with("FAILED") || r.result.starts_with("not finished") => {
                l.display().to_string()
            }
            _ => String::new(),
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            r.stage, r.job, r.state, r.result, log
        );
    }
    Ok(())
}
