//! `incubator bench-serve`: does the live server slow training down when many people watch?
//!
//! The same small run trains twice per round, as `incubator run --serve` (server and training
//! in one process): once with nobody connected, once with `--clients` event streams that read
//! everything, `--stalled` ones that never read a byte, and page loads in a loop, all on
//! loopback; the client threads run at SCHED_IDLE, standing in for remote browsers (see
//! `like_a_remote_machine`). The rounds alternate the order. Reported: training time as a ratio to the run
//! without clients in the same round, the process's peak memory in both, and what each client
//! received. The clients stop by themselves when the run ends (or after 10 minutes).

use clap::Args;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ServeLoadArgs {
    /// Event-stream clients that read everything.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Clients that open the stream and never read.
    #[arg(long, default_value_t = 10)]
    stalled: usize,
    /// Threads loading pages (`/`, `/api/runs`, the config, a stream's backlog) in a loop.
    #[arg(long, default_value_t = 4)]
    page_loaders: usize,
    /// Rounds of (without clients, with clients), alternating which goes first.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// The run to train (default: examples/tiny.toml with a longer baseline).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

const DEFAULT_RUN: &str = include_str!("../../examples/tiny.toml");

const DEADLINE: Duration = Duration::from_secs(600);

struct Measured {
    train_s: f64,
    peak_rss_mib: f64,
    /// Records each reading client got (when loaded).
    per_client: Vec<usize>,
    page_loads: usize,
    /// Longest wait of a reading client for its first record.
    slowest_first_record_s: f64,
    /// Records in the run's event files at the end.
    written: usize,
    /// CPU seconds of the training (and serving) process, and of this process's clients.
    run_cpu_s: f64,
    clients_cpu_s: f64,
}

pub fn run(a: &ServeLoadArgs) -> anyhow::Result<()> {
    // removed when dropped, on an error too
    let scratch = tempfile::Builder::new()
        .prefix("incubator-bench-serve-")
        .tempdir()?;
    let tmp = scratch.path();
    let config = match &a.config {
        Some(c) => c.clone(),
        None => {
            let p = tmp.join("config.toml");
            // the tiny run on 4096 images: about 10 s of training on 2 cores (release build)
            let text = DEFAULT_RUN.replace("train_limit = 1024", "train_limit = 4096");
            fs_err::write(&p, text)?;
            p
        }
    };
    outln!(
        "training {} with the live server in the same process; loaded = {} streaming + {} stalled clients + {} page loaders",
        config.display(),
        a.clients,
        a.stalled,
        a.page_loaders
    );
    outln!("| round | train s, no clients | train s, loaded | ratio | peak RSS MiB no clients / loaded | CPU s of the run process, no clients / loaded | CPU s of the clients | records per client (min-max) of written | page loads | slowest first record |");
    outln!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    anyhow::ensure!(a.rounds > 0, "--rounds must be at least 1");
    for round in 0..a.rounds {
        let mut pair = [None, None];
        for loaded in if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            let dir = tmp.join(format!(
                "round{round}-{}",
                if loaded { "loaded" } else { "quiet" }
            ));
            pair[loaded as usize] = Some(measure(&config, &dir, loaded.then_some(a))?);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let [Some(quiet), Some(loaded)] = pair else {
            unreachable!("both measured")
        };
        let ratio = loaded.train_s / quiet.train_s;
        ratios.push(ratio);
        let (lo, hi) = (
            loaded.per_client.iter().min().copied().unwrap_or(0),
            loaded.per_client.iter().max().copied().unwrap_or(0),
        );
        outln!(
            "| {} | {:.2} | {:.2} | {:.3} | {:.0} / {:.0} | {:.1} / {:.1} | {:.1} | {lo}-{hi} of {} | {} | {:.2} s |",
            round + 1,
            quiet.train_s,
            loaded.train_s,
            ratio,
            quiet.peak_rss_mib,
            loaded.peak_rss_mib,
            quiet.run_cpu_s,
            loaded.run_cpu_s,
            loaded.clients_cpu_s,
            loaded.written,
            loaded.page_loads,
            loaded.slowest_first_record_s,
        );
    }
    let (median, lowest, highest) = super::rounds::median_and_range(&ratios);
    outln!(
        "training time with clients / without: median {median:.3}, range {lowest:.3}-{highest:.3} over {} rounds",
        ratios.len()
    );
    Ok(())
}

fn measure(config: &Path, dir: &Path, load: Option<&ServeLoadArgs>) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "run",
            "--jobs",
            "1",
            "--no-progress",
            "--serve",
            "127.0.0.1:0",
            "-c",
        ])
        .arg(config)
        .arg("-d")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let result = watch(&mut child, dir, load);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn watch(child: &mut Child, dir: &Path, load: Option<&ServeLoadArgs>) -> anyhow::Result<Measured> {
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("live dashboard: http://")
        .map(|s| s.trim_end_matches('/').to_string())
        .ok_or_else(|| anyhow::anyhow!("the run did not start its server: {line:?}"))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut readers = Vec::new();
    let mut others = Vec::new();
    let page_loads = Arc::new(AtomicUsize::new(0));
    // the first answer that was not 200 OK, or a stream client's failure, if any
    let refused = Arc::new(std::sync::Mutex::new(None::<String>));
    // records each reading client has received so far
    let progress: Arc<Vec<AtomicUsize>> = Arc::new(
        (0..load.map_or(0, |a| a.clients))
            .map(|_| AtomicUsize::new(0))
            .collect(),
    );
    if let Some(a) = load {
        for i in 0..a.clients {
            let (addr, name, done) = (addr.clone(), name.clone(), done.clone());
            let (progress, refused) = (progress.clone(), refused.clone());
            readers.push(std::thread::spawn(move || {
                stream_client(&addr, &name, &done, started, &progress[i]).unwrap_or_else(|e| {
                    refused.lock().unwrap().get_or_insert(e);
                    f64::INFINITY
                })
            }));
        }
        for _ in 0..a.stalled {
            let (addr, name, done) = (addr.clone(), name.clone(), done.clone());
            others.push(std::thread::spawn(move || {
                like_a_remote_machine();
                if let Ok(mut s) = TcpStream::connect(&addr) {
                    let _ = write!(
                        s,
                        "{}",
                        request(&addr, &format!("/api/runs/{name}/events"), false)
                    );
                    while !done.load(Ordering::SeqCst) && started.elapsed() < DEADLINE {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }));
        }
        for _ in 0..a.page_loaders {
            let (addr, name, done, count) =
                (addr.clone(), name.clone(), done.clone(), page_loads.clone());
            let refused = refused.clone();
            others.push(std::thread::spawn(move || {
                like_a_remote_machine();
                let pages = [
                    "/".to_string(),
                    "/api/runs".into(),
                    format!("/api/runs/{name}/config"),
                ];
                let mut i = 0usize;
                while !done.load(Ordering::SeqCst) && started.elapsed() < DEADLINE && i < 100_000 {
                    match get(&addr, &pages[i % pages.len()]) {
                        Ok(Ok(_)) => {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Err(answer)) => {
                            refused.lock().unwrap().get_or_insert(answer);
                        }
                        // a load that failed on the way (a timeout) is not counted, as a
                        // browser's would not be
                        Err(_) => {}
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
    }
    let mut peak = 0.0f64;
    let clients_cpu_before = cpu_seconds("self");
    let report = dir.join("report.md");
    while !report.exists() {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the run ended early ({status})");
        }
        if started.elapsed() > DEADLINE {
            anyhow::bail!("the run took more than {DEADLINE:?}");
        }
        peak = peak.max(peak_rss_mib(child.id()));
        std::thread::sleep(Duration::from_millis(100));
    }
    peak = peak.max(peak_rss_mib(child.id()));
    let run_cpu_s = cpu_seconds(&child.id().to_string());
    let mut written = 0;
    for entry in fs_err::read_dir(dir.join("events"))? {
        written += fs_err::read(entry?.path())?
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
    }
    // let the readers take the last records (the training's end frees the cores their
    // SCHED_IDLE threads wait for), then stop everyone
    let waited = Instant::now();
    while progress.iter().any(|p| p.load(Ordering::SeqCst) < written)
        && waited.elapsed() < Duration::from_secs(10)
        && refused.lock().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    done.store(true, Ordering::SeqCst);
    let mut slowest = 0.0f64;
    for r in readers {
        slowest = slowest.max(r.join().expect("a client thread"));
    }
    for o in others {
        let _ = o.join();
    }
    if let Some(why) = refused.lock().unwrap().take() {
        anyhow::bail!(
            "the benchmark's clients were not served, so the load was not what was asked: {why}"
        );
    }
    let per_client: Vec<usize> = progress.iter().map(|p| p.load(Ordering::SeqCst)).collect();
    let clients_cpu_s = cpu_seconds("self") - clients_cpu_before;
    let train_s = training_seconds(dir)?;
    Ok(Measured {
        written,
        run_cpu_s,
        clients_cpu_s,
        train_s,
        peak_rss_mib: peak,
        per_client,
        page_loads: page_loads.load(Ordering::SeqCst),
        slowest_first_record_s: slowest,
    })
}

/// Reads the run's stream until told to stop, counting the records it receives in `records`:
/// the seconds to the first one (infinite if none came), or the server's answer if it was not
/// `200 OK`.
fn stream_client(
    addr: &str,
    name: &str,
    done: &AtomicBool,
    started: Instant,
    records: &AtomicUsize,
) -> Result<f64, String> {
    like_a_remote_machine();
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    write!(
        s,
        "{}",
        request(addr, &format!("/api/runs/{name}/events"), false)
    )
    .map_err(|e| format!("sending the request: {e}"))?;
    let mut first = f64::INFINITY;
    let mut buf = vec![0u8; 64 << 10];
    // everything up to the last line break not yet counted, and whether the status was seen
    let (mut carry, mut answered) = (Vec::new(), false);
    while !done.load(Ordering::SeqCst) && started.elapsed() < DEADLINE {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                carry.extend_from_slice(&buf[..n]);
                if !answered {
                    let Some(end) = carry.iter().position(|&b| b == b'\n') else {
                        continue;
                    };
                    let status = String::from_utf8_lossy(&carry[..end]).trim().to_string();
                    if !status.starts_with("HTTP/1.1 200") {
                        let body = String::from_utf8_lossy(&carry).into_owned();
                        return Err(format!("GET /api/runs/{name}/events: {body}"));
                    }
                    answered = true;
                }
                let mut lines = carry.split(|&b| b == b'\n').collect::<Vec<_>>();
                let rest = lines.pop().unwrap_or_default().to_vec();
                let got = lines.iter().filter(|l| l.starts_with(b"id:")).count();
                if got > 0 && records.load(Ordering::SeqCst) == 0 {
                    first = started.elapsed().as_secs_f64();
                }
                records.fetch_add(got, Ordering::SeqCst);
                carry = rest;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    Ok(first)
}

/// A GET request as a browser on another machine sends it to `addr`: the server's own address
/// as the `Host` (the server refuses other names, against DNS rebinding).
fn request(addr: &str, path: &str, close: bool) -> String {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{connection}\r\n")
}

/// Clients stand in for browsers on other machines: on this machine they would take cores from
/// the training they watch, which no remote client does. So their threads run only on cores
/// that would otherwise idle (SCHED_IDLE); the server's own work still competes as it would.
fn like_a_remote_machine() {
    #[cfg(target_os = "linux")]
    // SAFETY: changes only the calling thread's scheduling policy, with a zeroed sched_param
    // as SCHED_IDLE requires.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

/// One page load over a fresh connection: the whole response's length, or the response
/// itself if it is not `200 OK`.
fn get(addr: &str, path: &str) -> std::io::Result<Result<usize, String>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "{}", request(addr, path, true))?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(match body.starts_with(b"HTTP/1.1 200") {
        true => Ok(body.len()),
        false => Err(format!("GET {path}: {}", String::from_utf8_lossy(&body))),
    })
}

/// User + system CPU seconds of process `pid` (or `self`) so far.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // fields after the command name (which may hold spaces) in parentheses
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux)
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Training time of every stage, from their summaries.
fn training_seconds(dir: &Path) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for entry in fs_err::read_dir(dir.join("stages"))? {
        let summary = entry?.path().join("summary.json");
        let v: serde_json::Value = serde_json::from_slice(&fs_err::read(&summary)?)?;
        total += v["wall_s"].as_f64().unwrap_or(0.0);
    }
    Ok(total)
}
