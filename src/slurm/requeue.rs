//! A stage stopped by Slurm's time-limit warning (SIGUSR1, asked for by our batch scripts with
//! `--signal=B:USR1@...`) has saved its state; it puts its own job back in the queue, so the
//! next allocation resumes it. SIGTERM (preemption, `scancel`, `scontrol requeue`) only stops:
//! Slurm requeues preempted jobs itself, and a cancelled job must stay cancelled.

use std::process::Command;

/// This process's job as `scontrol` names it: `ARRAYJOB_TASK` for an array task.
pub fn own_job_id() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(job), Some(task)) => Some(format!("{job}_{task}")),
        _ => var("SLURM_JOB_ID"),
    }
}

/// Requeues this job; says what happened either way.
pub fn requeue_self() {
    let Some(job) = own_job_id() else {
        eprintln!("SIGUSR1 outside a Slurm job: stopped without requeueing");
        return;
    };
    match Command::new("scontrol").args(["requeue", &job]).output() {
        Ok(o) if o.status.success() => {
            eprintln!("time limit near: job {job} requeued; it resumes from the saved state")
        }
        Ok(o) => eprintln!(
            "could not requeue job {job} (`scontrol requeue {job}`: {}); submit the stage again to resume",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!(
            "could not run scontrol to requeue job {job} ({e}); submit the stage again to resume"
        ),
    }
}
