//! A stage stopped by Slurm's time-limit warning (SIGUSR1, asked for by our batch scripts with
//! `--signal=B:USR1@...`) has saved its state; it puts its own job back in the queue, so the
//! next allocation resumes it. SIGTERM (preemption, `scancel`, `scontrol requeue`) only stops:
//! Slurm requeues preempted jobs itself, and a cancelled job must stay cancelled.

use incubator_core::telemetry::host::slurm_job_id;
use std::process::Command;

/// Requeues this job; says what happened either way.
pub fn requeue_self() {
    let Some(job) = slurm_job_id() else {
        say("SIGUSR1 outside a Slurm job: stopped without requeueing".to_string());
        return;
    };
    say(match Command::new("scontrol").args(["requeue", &job]).output() {
        Ok(o) if o.status.success() => {
            format!("time limit near: job {job} requeued; it resumes from the saved state")
        }
        Ok(o) => format!(
            "could not requeue job {job} (`scontrol requeue {job}`: {}); submit the stage again to resume",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!(
            "could not run scontrol to requeue job {job} ({e}); submit the stage again to resume"
        ),
    })
}

/// One line to stderr in one write: the requeue makes slurmstepd write to the same log at the
/// same moment, and `eprintln!` writes each piece of its format separately, so slurmstepd's
/// line landed inside ours (`time limit near: job slurmstepd-vm: error: ...`).
fn say(line: String) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}
