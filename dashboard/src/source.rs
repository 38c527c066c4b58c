//! Where a run's records come from: a run directory on this machine (native), or a live
//! server's event stream (native over HTTP, or the browser's EventSource).

use incubator_events::Record;

/// A feed of one run's records. `poll` never blocks: the UI calls it every frame.
pub trait Source {
    /// The run's name as the dashboard shows it.
    fn name(&self) -> String;
    /// The configuration it is a seed of (a sweep point), if any.
    fn group(&self) -> Option<String> {
        None
    }
    /// Records that arrived since the last call.
    fn poll(&mut self) -> Vec<Record>;
    /// The run's resolved config (TOML), once known.
    fn config(&mut self) -> Option<String>;
    /// A problem worth showing (the directory does not exist, the server went away).
    fn problem(&self) -> Option<String> {
        None
    }
}

/// A run's name as one URL path segment (a sweep's runs are named `point/seedN`).
pub fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The server's run list (`GET /api/runs`): (name, group) of each run.
pub fn parse_run_list(text: &str) -> Result<Vec<(String, Option<String>)>, serde_json::Error> {
    let list: serde_json::Value = serde_json::from_str(text)?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let name = r["name"].as_str()?.to_string();
            Some((name, r["group"].as_str().map(str::to_string)))
        })
        .collect())
}

/// Parses one JSONL line; lines of a newer, unknown event kind are skipped, not fatal.
pub fn parse(line: &str) -> Option<Record> {
    serde_json::from_str(line).ok()
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{DirSource, HttpSource, ServerError};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::{parse, parse_run_list, path_segment, Source};
    use incubator_events::sweep::SweepPlanError;
    use incubator_events::tail::RunTail;
    use incubator_events::Record;
    use std::path::PathBuf;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// A run directory read directly, following its event files as they grow.
    pub struct DirSource {
        dir: PathBuf,
        tail: RunTail,
        last_poll: Option<Instant>,
        /// For a sweep's run: (`point/seedN`, point).
        in_sweep: Option<(String, String)>,
    }

    impl DirSource {
        pub fn new(dir: PathBuf) -> DirSource {
            DirSource {
                tail: RunTail::new(&dir, None).with_max_read(8 << 20),
                dir,
                last_poll: None,
                in_sweep: None,
            }
        }

        /// The runs under `dir`: every run of a sweep directory (`incubator sweep`), named
        /// `point/seedN` and grouped by point, or the run directory itself.
        pub fn open(dir: PathBuf) -> Result<Vec<DirSource>, SweepPlanError> {
            if !dir.join("sweep.json").exists() {
                return Ok(vec![DirSource::new(dir)]);
            }
            let runs = incubator_events::sweep::runs_of(&dir)?;
            Ok(runs
                .into_iter()
                .map(|r| {
                    let mut s = DirSource::new(r.dir);
                    s.in_sweep = Some((r.name, r.point));
                    s
                })
                .collect())
        }
    }

    impl Source for DirSource {
        fn name(&self) -> String {
            if let Some((name, _)) = &self.in_sweep {
                return name.clone();
            }
            let dir = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.dir.display().to_string())
        }

        fn group(&self) -> Option<String> {
            self.in_sweep.as_ref().map(|(_, point)| point.clone())
        }

        fn poll(&mut self) -> Vec<Record> {
            // the files are read at most 5 times a second, however fast the UI repaints
            if self
                .last_poll
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
            {
                return Vec::new();
            }
            self.last_poll = Some(Instant::now());
            self.tail
                .poll()
                .iter()
                .filter_map(|(_, l)| parse(l))
                .collect()
        }

        fn config(&mut self) -> Option<String> {
            std::fs::read_to_string(self.dir.join("config.toml")).ok()
        }

        fn problem(&self) -> Option<String> {
            (!self.dir.join("events").is_dir())
                .then(|| format!("{}: no events yet", self.dir.display()))
        }
    }

    /// One run of a live server (`incubator serve`), streamed over HTTP by a background thread
    /// that reconnects and resumes from the last record it got.
    pub struct HttpSource {
        name: String,
        group: Option<String>,
        config: Option<String>,
        rx: mpsc::Receiver<Result<Record, ServerError>>,
        problem: Option<String>,
        base: String,
        token: Option<String>,
    }

    /// A GET to the server, with its token when it has one.
    fn get(url: &str, token: Option<&str>) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let req = ureq::get(url);
        match token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    impl HttpSource {
        /// Every run a server at `url` (`http://127.0.0.1:8787`, or the address it printed,
        /// `http://host:8787/?token=T`) serves; `token` is used when the URL has none.
        pub fn all(url: &str, token: Option<&str>) -> Result<Vec<HttpSource>, ServerError> {
            let (base, in_url) = incubator_events::access::split_server_url(url);
            let token = in_url.or(token.map(str::to_string));
            let url = format!("{base}/api/runs");
            let text = get(&url, token.as_deref())
                .call()
                .and_then(|mut r| r.body_mut().read_to_string())
                .map_err(|e| match e {
                    ureq::Error::StatusCode(401) => ServerError::NeedsToken { url: url.clone() },
                    source => ServerError::Http {
                        url: url.clone(),
                        source,
                    },
                })?;
            let list =
                parse_run_list(&text).map_err(|source| ServerError::RunList { url, source })?;
            Ok(list
                .into_iter()
                .map(|(name, group)| HttpSource::new(&base, token.clone(), name, group))
                .collect())
        }

        fn new(
            base: &str,
            token: Option<String>,
            name: String,
            group: Option<String>,
        ) -> HttpSource {
            let (tx, rx) = mpsc::channel();
            let url = format!("{base}/api/runs/{}/events", path_segment(&name));
            let stream_token = token.clone();
            std::thread::spawn(move || stream(url, stream_token, tx));
            HttpSource {
                name,
                group,
                config: None,
                rx,
                problem: None,
                base: base.to_string(),
                token,
            }
        }
    }

    /// Why a server's runs cannot be followed.
    #[derive(Debug)]
    pub enum ServerError {
        NeedsToken {
            url: String,
        },
        Http {
            url: String,
            source: ureq::Error,
        },
        RunList {
            url: String,
            source: serde_json::Error,
        },
    }

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                ServerError::NeedsToken { url } => write!(
                    f,
                    "{url}: the server needs its token: give the address it printed (ending in ?token=...) or --token"
                ),
                ServerError::Http { url, source } => write!(f, "{url}: {source}"),
                ServerError::RunList { url, source } => {
                    write!(f, "{url}: not a list of runs ({source})")
                }
            }
        }
    }

    impl std::error::Error for ServerError {}

    /// Reads server-sent events, reconnecting with the last id after a failure.
    fn stream(url: String, token: Option<String>, tx: mpsc::Sender<Result<Record, ServerError>>) {
        use std::io::BufRead;
        let mut last_id: Option<String> = None;
        loop {
            let mut req = get(&url, token.as_deref());
            if let Some(id) = &last_id {
                req = req.header("Last-Event-ID", id);
            }
            match req.call() {
                Ok(mut resp) => {
                    let reader = std::io::BufReader::new(resp.body_mut().as_reader());
                    let (mut id, mut data) = (None, String::new());
                    for line in reader.lines() {
                        let Ok(line) = line else { break };
                        if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim().to_string());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        } else if line.is_empty() {
                            if let (Some(rec), Some(i)) = (parse(&data), id.take()) {
                                last_id = Some(i);
                                if tx.send(Ok(rec)).is_err() {
                                    return;
                                }
                            }
                            data.clear();
                        }
                    }
                }
                Err(source) => {
                    let url = url.clone();
                    if tx.send(Err(ServerError::Http { url, source })).is_err() {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    impl Source for HttpSource {
        fn name(&self) -> String {
            self.name.clone()
        }

        fn group(&self) -> Option<String> {
            self.group.clone()
        }

        fn poll(&mut self) -> Vec<Record> {
            let mut out = Vec::new();
            while let Ok(item) = self.rx.try_recv() {
                match item {
                    Ok(r) => {
                        self.problem = None;
                        out.push(r);
                    }
                    Err(e) => self.problem = Some(e.to_string()),
                }
            }
            out
        }

        fn config(&mut self) -> Option<String> {
            if self.config.is_none() {
                let url = format!("{}/api/runs/{}/config", self.base, path_segment(&self.name));
                self.config = get(&url, self.token.as_deref())
                    .call()
                    .ok()
                    .and_then(|mut r| r.body_mut().read_to_string().ok());
            }
            self.config.clone()
        }

        fn problem(&self) -> Option<String> {
            self.problem.clone()
        }
    }
}
