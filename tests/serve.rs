//! The live server run as the real binary: the run list, the event stream (backlog, then new
//! records as they are written, resumed after the last id a client got), several runs, clear
//! 404s, and the native dashboard's HTTP source reading it; who may read it (a token beyond
//! loopback, the Host check), and that slow or idle clients cannot hold it.

mod common;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn serve(runs: &[&Path]) -> Server {
    serve_with(runs, &["--addr", "127.0.0.1:0"])
}

fn serve_with(runs: &[&Path], args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .arg("serve")
        .args(runs)
        .args(args)
        .env_remove("INCUBATOR_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split(" at ")
        .nth(1)
        .expect("serving ... at URL")
        .trim()
        .to_string();
    Server { child, url }
}

fn record(stage: &str, step: u64) -> String {
    format!(
        r#"{{"v":1,"time":{step}.0,"stage":"{stage}","event":"train_step","step":{step},"epoch":0.1,"loss":2.0,"lr":0.001,"grad_norm":1.0,"samples_per_sec":100.0}}"#
    )
}

fn make_run(dir: &Path, stage: &str, steps: u64) {
    std::fs::create_dir_all(dir.join("events")).unwrap();
    std::fs::write(dir.join("config.toml"), "seed = 3\n").unwrap();
    let lines: String = (1..=steps).map(|s| record(stage, s) + "\n").collect();
    std::fs::write(dir.join(format!("events/{stage}.jsonl")), lines).unwrap();
}

/// Appends one line to an event file, as a training process does.
fn append(file: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all((line.to_string() + "\n").as_bytes()).unwrap();
}

/// Reads server-sent events until `until` says stop: (id, data) of each message.
fn read_events(
    url: &str,
    last_id: Option<&str>,
    mut until: impl FnMut(&[(String, String)], Option<&str>) -> bool,
) -> Vec<(String, String)> {
    let mut req = ureq::get(url);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    let mut resp = req.call().unwrap();
    let reader = BufReader::new(resp.body_mut().as_reader());
    let (mut out, mut id, mut data, mut kind) = (Vec::new(), None, String::new(), None);
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("event:") {
            kind = Some(v.trim().to_string());
        } else if line.is_empty() {
            if kind.is_none() {
                if let Some(i) = id.take() {
                    out.push((i, std::mem::take(&mut data)));
                }
            }
            if until(&out, kind.as_deref()) {
                break;
            }
            kind = None;
        }
    }
    out
}

#[test]
fn the_stream_sends_the_backlog_then_live_records_and_resumes_after_the_last_id() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alpha"), tmp.path().join("beta"));
    make_run(&a, "meta", 5);
    make_run(&b, "e2e", 2);
    let server = serve(&[&a, &b]);

    let runs = ureq::get(format!("{}api/runs", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        runs.contains("\"alpha\"") && runs.contains("\"beta\""),
        "{runs}"
    );
    let config = ureq::get(format!("{}api/runs/alpha/config", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(config, "seed = 3\n");

    // the backlog, then (after the snapshot marker) a record written while we listen
    let events_url = format!("{}api/runs/alpha/events", server.url);
    let meta = a.join("events/meta.jsonl");
    let mut appended = false;
    let got = read_events(&events_url, None, |got, kind| {
        if kind == Some("snapshot") && !appended {
            append(&meta, &record("meta", 6));
            appended = true;
        }
        got.len() == 6
    });
    let steps: Vec<String> = got.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(
        steps,
        (1..=6).map(|s| record("meta", s)).collect::<Vec<_>>()
    );

    // a client that got the first two records resumes with the third
    let resumed = read_events(&events_url, Some(&got[1].0), |got, _| got.len() == 4);
    assert_eq!(resumed[0].1, record("meta", 3));
    assert_eq!(resumed.len(), 4);

    let missing = ureq::get(format!("{}api/runs/gamma/events", server.url)).call();
    assert!(
        matches!(missing, Err(ureq::Error::StatusCode(404))),
        "{missing:?}"
    );
}

#[test]
fn the_native_dashboard_reads_every_run_of_a_server() {
    use incubator_dashboard::source::{HttpSource, Source};
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alpha"), tmp.path().join("beta"));
    make_run(&a, "meta", 30);
    make_run(&b, "e2e", 12);
    let server = serve(&[&a, &b]);
    let mut sources = HttpSource::all(&server.url, None).unwrap();
    assert_eq!(
        sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    let mut counts = [0usize; 2];
    let start = Instant::now();
    while counts != [30, 12] && start.elapsed() < Duration::from_secs(20) {
        for (s, n) in sources.iter_mut().zip(&mut counts) {
            *n += s.poll().len();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counts, [30, 12]);
    assert_eq!(sources[0].config().as_deref(), Some("seed = 3\n"));
}

#[test]
fn a_sweep_directory_is_served_as_its_runs_grouped_by_configuration() {
    use incubator_dashboard::source::{DirSource, HttpSource, Source};
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweep");
    std::fs::create_dir_all(&sweep).unwrap();
    std::fs::write(
        sweep.join("sweep.json"),
        r#"{"title":"t","spec":"s.toml","axes":[],"points":[{"name":"model.depth=8,lr=0.1","coords":[],"set":[]}],"seeds":[0,1]}"#,
    )
    .unwrap();
    make_run(&sweep.join("runs/model.depth=8,lr=0.1/seed0"), "meta", 5);
    make_run(&sweep.join("runs/model.depth=8,lr=0.1/seed1"), "meta", 7);
    let server = serve(&[&sweep]);
    let mut sources = HttpSource::all(&server.url, None).unwrap();
    let names: Vec<(String, Option<String>)> =
        sources.iter().map(|s| (s.name(), s.group())).collect();
    let point = Some("model.depth=8,lr=0.1".to_string());
    assert_eq!(
        names,
        [
            ("model.depth=8,lr=0.1/seed0".to_string(), point.clone()),
            ("model.depth=8,lr=0.1/seed1".to_string(), point.clone())
        ]
    );
    // names with `/`, `=` and `,` reach their streams (percent-encoded in the URL)
    let mut counts = [0usize; 2];
    let start = Instant::now();
    while counts != [5, 7] && start.elapsed() < Duration::from_secs(20) {
        for (s, n) in sources.iter_mut().zip(&mut counts) {
            *n += s.poll().len();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counts, [5, 7]);
    assert_eq!(sources[1].config().as_deref(), Some("seed = 3\n"));
    // the native dashboard opens the same directory directly, with the same names and groups
    let local: Vec<(String, Option<String>)> = DirSource::open(sweep.clone())
        .unwrap()
        .iter()
        .map(|s| (s.name(), s.group()))
        .collect();
    assert_eq!(local, names);
    // a corrupt plan is a clear error, not an empty dashboard
    std::fs::write(sweep.join("sweep.json"), "{").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(["serve", sweep.to_str().unwrap(), "--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("sweep.json") && err.contains("not a sweep plan"),
        "{err}"
    );
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn clients_that_never_read_hold_up_no_one_and_cost_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("big");
    make_run(&run, "meta", 30_000); // a 5 MB backlog
    let server = serve(&[&run]);
    let addr = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let before = rss_kib(server.child.id(), "VmRSS:");

    // 100 clients ask for the stream and never read a byte of it
    let stalled: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "GET /api/runs/big/events HTTP/1.1\r\nHost: {addr}\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2)); // their queues and socket buffers fill

    // a reader still gets the whole backlog and a live record promptly
    let events_url = format!("{}api/runs/big/events", server.url);
    let meta = run.join("events/meta.jsonl");
    let start = Instant::now();
    let mut appended = false;
    let got = read_events(&events_url, None, |got, kind| {
        if kind == Some("snapshot") && !appended {
            append(&meta, &record("meta", 30_001));
            appended = true;
        }
        got.len() == 30_001
    });
    assert_eq!(got.last().unwrap().1, record("meta", 30_001));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the reader waited {:?} behind the stalled clients",
        start.elapsed()
    );
    let grown_mib = (rss_kib(server.child.id(), "VmHWM:") - before) as f64 / 1024.0;
    assert!(
        grown_mib < 64.0,
        "100 stalled clients grew the server by {grown_mib:.0} MiB"
    );
    eprintln!("100 stalled clients: server memory +{grown_mib:.1} MiB");
    drop(stalled);
}

/// A raw HTTP/1.1 GET on `addr` with these headers: (status, headers and body as text).
fn raw_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}

/// `http://ADDR/...` -> `ADDR`.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn beyond_loopback_every_api_request_needs_the_token_the_server_printed() {
    use incubator_dashboard::source::HttpSource;
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("alpha");
    make_run(&a, "meta", 3);
    let server = serve_with(&[&a], &["--addr", "0.0.0.0:0"]);
    let (base, token) = server
        .url
        .split_once("/?token=")
        .expect("a token in the URL");
    assert_eq!(token.len(), 32, "{}", server.url);
    let port = authority(base).rsplit(':').next().unwrap().to_string();
    let addr = format!("127.0.0.1:{port}");
    let host = [("Host", addr.as_str())];
    for path in [
        "/api/runs",
        "/api/runs/alpha/config",
        "/api/runs/alpha/events",
        "/api/runs/nope/config",
    ] {
        let (status, text) = raw_get(&addr, path, &host);
        assert_eq!(status, 401, "{path}: {text}");
        assert!(text.contains("needs its token"), "{text}");
        let first = if token.starts_with('0') { '1' } else { '0' };
        let wrong = format!("{first}{}", &token[1..]);
        let (status, _) = raw_get(&addr, &format!("{path}?token={wrong}"), &host);
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, text) = raw_get(&addr, &format!("/api/runs?token={token}"), &host);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("\"alpha\"") && !text.contains(tmp.path().to_str().unwrap()),
        "no paths of this machine: {text}"
    );
    let bearer = format!("Bearer {token}");
    let (status, text) = raw_get(
        &addr,
        "/api/runs/alpha/config",
        &[("Host", addr.as_str()), ("Authorization", bearer.as_str())],
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("seed = 3\n"), "{text}");
    // the page itself (the same bundle for everyone) loads without it
    assert_eq!(raw_get(&addr, "/", &host).0, 200);
    // nothing is written through the server
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "{method} /api/runs/alpha/config?token={token} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 405"), "{method}: {text}");
    }
    // the native dashboard: with the printed address, or its base and --token
    let printed = server.url.replace("0.0.0.0", "127.0.0.1");
    assert_eq!(HttpSource::all(&printed, None).unwrap().len(), 1);
    let plain = format!("http://{addr}");
    assert_eq!(HttpSource::all(&plain, Some(token)).unwrap().len(), 1);
    let e = HttpSource::all(&plain, None).err().expect("refused");
    assert!(
        matches!(
            e,
            incubator_dashboard::source::ServerError::NeedsToken { .. }
        ) && e.to_string().contains("needs its token"),
        "{e}"
    );

    // a token of one's own; a weak one is refused by name
    let mine = "my-own-token-0123456789";
    let server = serve_with(&[&a], &["--addr", "0.0.0.0:0", "--token", mine]);
    assert!(
        server.url.ends_with(&format!("?token={mine}")),
        "{}",
        server.url
    );
    let out = common::incubator(&["serve", a.to_str().unwrap(), "--token", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("at least 16 characters"));
}

#[test]
fn a_request_for_another_host_name_is_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("alpha");
    make_run(&a, "meta", 3);
    let server = serve_with(
        &[&a],
        &["--addr", "127.0.0.1:0", "--allow-host", "dash.lab.example"],
    );
    let addr = authority(&server.url);
    let port = addr.rsplit(':').next().unwrap();
    // a page of rebind.example whose name now resolves to 127.0.0.1 sends its own name
    for (host, status) in [
        (format!("rebind.example:{port}"), 403),
        (format!("127.0.0.1.rebind.example:{port}"), 403),
        (format!("localhost:{port}"), 200),
        (addr.clone(), 200),
        (format!("[::1]:{port}"), 200),
        (format!("dash.lab.example:{port}"), 200),
    ] {
        for path in ["/api/runs", "/"] {
            let (got, text) = raw_get(&addr, path, &[("Host", host.as_str())]);
            assert_eq!(got, status, "Host {host} {path}: {text}");
            if status == 403 {
                assert!(
                    text.contains("--allow-host rebind.example")
                        || text.contains("--allow-host 127.0.0.1.rebind.example"),
                    "{text}"
                );
            }
        }
    }
}

#[test]
fn slow_clients_neither_starve_a_normal_request_nor_hold_the_server() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("alpha");
    make_run(&a, "meta", 3);
    let server = serve_with(&[&a], &["--addr", "127.0.0.1:0", "--header-timeout", "2"]);
    let addr = authority(&server.url);
    let half = format!("GET /api/runs HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
    let slow: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(half.as_bytes()).unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    let (status, _) = raw_get(&addr, "/api/runs", &[("Host", addr.as_str())]);
    assert_eq!(status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "a normal request waited {:?} behind 300 slow ones",
        start.elapsed()
    );
    // each slow one is closed once its headers are late
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );

    // at the connection cap, a normal request is served once the slow ones time out
    let server = serve_with(
        &[&a],
        &[
            "--addr",
            "127.0.0.1:0",
            "--header-timeout",
            "2",
            "--max-connections",
            "8",
        ],
    );
    let addr = authority(&server.url);
    let slow: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let (status, _) = raw_get(&addr, "/api/runs", &[("Host", addr.as_str())]);
    assert_eq!(status, 200);
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_millis(1000) && waited < Duration::from_secs(10),
        "the ninth connection waited {waited:?}: the cap should hold it until the 2 s header timeout frees a slot"
    );
    drop(slow);
}
