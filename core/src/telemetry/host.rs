//! Where a stage runs: the host, and for a Slurm job its id and how long it waited before it
//! started (the dashboard's timeline draws that wait).

use std::process::Command;

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// This process's job as `scontrol` names it: `ARRAYJOB_TASK` for an array task.
pub fn slurm_job_id() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(job), Some(task)) => Some(format!("{job}_{task}")),
        _ => var("SLURM_JOB_ID"),
    }
}

/// For a Slurm job: (held, queued) seconds, from submission until its dependencies were met
/// and from then until it started, as `scontrol show job` reports them. `None` outside Slurm
/// or when scontrol cannot tell (the timeline then shows no queue time; nothing fails).
pub fn slurm_wait() -> Option<(f64, f64)> {
    let job = slurm_job_id()?;
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", &job])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    wait_from_scontrol(&String::from_utf8_lossy(&out.stdout))
}

/// (held, queued) from `scontrol show job -o` output. Its times are local, but only their
/// differences are used, so the time zone cancels out.
pub fn wait_from_scontrol(line: &str) -> Option<(f64, f64)> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(seconds)
    };
    let (submit, eligible, start) = (
        field("SubmitTime")?,
        field("EligibleTime")?,
        field("StartTime")?,
    );
    (submit <= eligible && eligible <= start)
        .then(|| ((eligible - submit) as f64, (start - eligible) as f64))
}

/// `2026-12-01T08:45:01` as seconds since 1970-01-01T00:00:00 of the same clock.
fn seconds(t: &str) -> Option<i64> {
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut h = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // days from civil (Howard Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_from_scontrol_times() {
        assert_eq!(seconds("1970-01-02T00:00:10"), Some(86410));
        assert_eq!(seconds("2000-03-01T00:00:00"), Some(951868800));
        // across a month end: held 1 min 30 s, then queued 1 day and 2 s
        let line = "JobId=12 JobName=incubate-1 SubmitTime=2026-11-30T23:58:30 EligibleTime=2026-11-30T23:59:00 AccrueTime=Unknown StartTime=2026-12-01T23:59:02 EndTime=Unknown";
        assert_eq!(wait_from_scontrol(line), Some((30.0, 86402.0)));
        // a pending job has no start time yet
        assert_eq!(
            wait_from_scontrol(
                "SubmitTime=2026-12-01T00:00:00 EligibleTime=Unknown StartTime=Unknown"
            ),
            None
        );
    }
}
