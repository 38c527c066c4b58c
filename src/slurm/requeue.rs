//! A stage stopped by Slurm's time-limit warning (SIGUSR1, asked for by our batch scripts with
//! `--signal=B:USR1@...`) has saved its state; it puts its own job back in the queue, so the
//! next allocation resumes it. SIGTERM (preemption, `scancel`, `scontrol requeue`) only stops:
//! Slurm requeues preempted jobs itself, and a cancelled job must stay cancelled.

use incubator_core::telemetry::host::slurm_job_id;
use std::process::Command;

/// Requeues this job; says what happened either way.
pub fn requeue_self() {
    let Some(job) = slurm_job_id() else {
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
