//! Runs a sweep's runs on this machine, `jobs` at a time, each as its own `incubator run`
//! process (a failed or killed run takes nothing else with it) logging to `logs/`.

use super::plan::{finished, PlannedRun, SweepDir};
use incubator_core::run_dir::RunDir;
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
    let mut todo: Vec<usize> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if !finished(&dir.run_dir(&r.point, r.seed))? {
            todo.push(i);
        }
    }
    outln!(
        "sweep {}: {} runs, {} finished, {} to train ({} at a time)",
        dir.root.display(),
        runs.len(),
        runs.len() - todo.len(),
        todo.len(),
        opts.jobs
    );
    let mut queue = todo.into_iter();
    let mut running: Vec<Running> = Vec::new();
    // Runs another process still has open (an earlier sweep's run saving its state after that
    // sweep was killed): each holds a slot until that process lets go, then starts here.
    let mut waiting: Vec<usize> = Vec::new();
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
        let mut still_waiting = Vec::new();
        for i in waiting {
            if RunDir::at(&dir.run_dir(&runs[i].point, runs[i].seed))
                .in_use()
                .is_some()
            {
                still_waiting.push(i);
            } else {
                running.push(start(dir, &runs[i], i, &exe, opts)?);
            }
        }
        waiting = still_waiting;
        while running.len() + waiting.len() < opts.jobs.max(1) {
            let Some(i) = queue.next() else { break };
            let r = &runs[i];
            let run_dir = dir.run_dir(&r.point, r.seed);
            match RunDir::at(&run_dir).in_use() {
                Some(who) => {
                    outln!(
                        "  waiting  {} seed {}: {who} still has {} open (a run of an earlier sweep stopping?); it starts here once that process ends",
                        r.point,
                        r.seed,
                        run_dir.display()
                    );
                    waiting.push(i);
                }
                None => running.push(start(dir, r, i, &exe, opts)?),
            }
        }
        if running.is_empty() && waiting.is_empty() {
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
                        outln!(
                            "  [{done}/{total}] finished {} seed {} ({took:.1} min)",
                            run.point,
                            run.seed
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
                        outln!(
                            "  [{done}/{total}] FAILED   {} seed {} ({status}): {tail}",
                            run.point,
                            run.seed
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

/// Starts one run as `incubator run` in its own process group (a Ctrl-C at the terminal
/// reaches the sweep, which stops its runs in order), and tied to this process: if the sweep
/// dies however it dies (SIGKILL included), the kernel sends the run SIGTERM, so it saves its
/// state and stops instead of training on unwatched.
fn start(
    dir: &SweepDir,
    r: &PlannedRun,
    index: usize,
    exe: &std::path::Path,
    opts: &LocalOptions,
) -> anyhow::Result<Running> {
    let log_path = dir.log_file(&r.point, r.seed);
    let logs = log_path.parent().expect("has a parent");
    fs_err::create_dir_all(logs)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .arg("run")
        .arg("--no-progress")
        .arg("--jobs")
        .arg(opts.run_jobs.max(1).to_string())
        .arg("-c")
        .arg(dir.config_file(&r.point, r.seed))
        .arg("-d")
        .arg(dir.run_dir(&r.point, r.seed))
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log_path.display()))?,
        )
        .stderr(log)
        .process_group(0);
    die_with_parent(&mut command);
    let child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", exe.display()))?;
    outln!(
        "  started  {} seed {} (log {})",
        r.point,
        r.seed,
        log_path.display()
    );
    Ok(Running {
        child,
        run: index,
        started: Instant::now(),
    })
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, raise).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The sweep died between fork and prctl: no signal will come, so act on it now.
            if libc::getppid() != parent {
                libc::raise(libc::SIGTERM);
            }
            Ok(())
        })
    };
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}
