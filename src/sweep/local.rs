//! Runs a sweep's runs on this machine, `jobs` at a time, each as its own `incubator run`
//! process (a failed or killed run takes nothing else with it) logging to `logs/`.

use super::plan::{finished, PlannedRun, SweepDir};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalOptions {
    /// Runs at the same time.
    pub jobs: usize,
    /// `--jobs` of each run (stages at the same time inside it).
    pub run_jobs: usize,
}

struct Running {
    child: Child,
    run: usize,
    started: Instant,
}

/// Trains every unfinished run; the runs that failed, with their logs' last lines.
pub fn run_all(
    dir: &SweepDir,
    runs: &[PlannedRun],
    opts: &LocalOptions,
) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe()?;
    let todo: Vec<usize> = (0..runs.len())
        .filter(|&i| !finished(&dir.run_dir(&runs[i].point, runs[i].seed), &runs[i].config))
        .collect();
    println!(
        "sweep {}: {} runs, {} finished, {} to train ({} at a time)",
        dir.root.display(),
        runs.len(),
        runs.len() - todo.len(),
        todo.len(),
        opts.jobs
    );
    let mut queue = todo.into_iter();
    let mut running: Vec<Running> = Vec::new();
    let mut failures = Vec::new();
    let mut done = 0usize;
    let total = queue.len();
    loop {
        if let Some(signal) = incubator_core::interrupt::requested() {
            for r in &running {
                // Each run saves its state and stops on SIGTERM; they sit in their own process
                // groups, so this is the only signal they get.
                unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
            }
            for mut r in running {
                let _ = r.child.wait();
            }
            anyhow::bail!(
                "{}: stopped the sweep; finished runs are kept and the interrupted ones saved their state. The same command resumes it",
                signal.name()
            );
        }
        while running.len() < opts.jobs.max(1) {
            let Some(i) = queue.next() else { break };
            let r = &runs[i];
            let log_path = dir.log_file(&r.point, r.seed);
            std::fs::create_dir_all(log_path.parent().expect("has a parent"))?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)?;
            let child = Command::new(&exe)
                .arg("run")
                .arg("--no-progress")
                .arg("--jobs")
                .arg(opts.run_jobs.max(1).to_string())
                .arg("-c")
                .arg(dir.config_file(&r.point, r.seed))
                .arg("-d")
                .arg(dir.run_dir(&r.point, r.seed))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", exe.display()))?;
            println!(
                "  started  {} seed {} (log {})",
                r.point,
                r.seed,
                log_path.display()
            );
            running.push(Running {
                child,
                run: i,
                started: Instant::now(),
            });
        }
        if running.is_empty() {
            break;
        }
        let mut still = Vec::new();
        for mut r in running {
            match r.child.try_wait()? {
                None => still.push(r),
                Some(status) => {
                    done += 1;
                    let run = &runs[r.run];
                    let took = r.started.elapsed().as_secs_f64() / 60.0;
                    if status.success() {
                        println!(
                            "  [{done}/{total}] finished {} seed {} ({took:.1} min)",
                            run.point, run.seed
                        );
                    } else {
                        let log = dir.log_file(&run.point, run.seed);
                        let tail = std::fs::read_to_string(&log)
                            .unwrap_or_default()
                            .lines()
                            .rev()
                            .find(|l| l.starts_with("error"))
                            .unwrap_or("(no error line)")
                            .to_string();
                        println!(
                            "  [{done}/{total}] FAILED   {} seed {} ({status}): {tail}",
                            run.point, run.seed
                        );
                        failures.push(format!(
                            "{} seed {}: {tail} (log {})",
                            run.point,
                            run.seed,
                            log.display()
                        ));
                    }
                }
            }
        }
        running = still;
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(failures)
}
