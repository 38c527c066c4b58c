//! `incubator serve`: the live server. It follows the run directories' event files (the
//! training processes only ever append to them, so no client can slow training down) and
//! serves the dashboard and the event stream:
//!
//! - `GET /` and its files: the WASM dashboard bundle (`dashboard/dist`, see `bundle.rs`);
//! - `GET /api/runs`: the runs, `[{"name": .., "group": ..}]` (no paths of this machine); a sweep directory
//!   stands for its runs, named `point/seedN` (percent-encode the `/` in URLs) and grouped by
//!   point;
//! - `GET /api/runs/NAME/config`: the run's resolved config (TOML);
//! - `GET /api/runs/NAME/events`: server-sent events, one record per event (`data:` is the
//!   JSONL line), first everything logged so far, then new records as they are written. Each
//!   event's `id:` is a position; a client that reconnects (EventSource sends `Last-Event-ID`,
//!   or `?from=ID`) resumes right after the last record it got. A `snapshot` event marks the
//!   end of the backlog.
//!
//! Every request passes [`access::guard`] (the Host check, and the token when there is one);
//! connections are served by [`listen::serve`] (header deadline, connection cap). Nothing is
//! written through the server: every route is a GET of what the runs already hold.

pub mod access;
pub mod bundle;
pub mod listen;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Records queued for one client; a slower client makes its own reader wait, nothing else.
/// With the 64 KiB read limit per file and poll, this bounds what one client costs the server.
const CLIENT_QUEUE: usize = 256;
const POLL: Duration = Duration::from_millis(250);
/// Threads reading run files at once, for all clients together.
const BLOCKING_THREADS: usize = 4;

struct Served {
    runs: BTreeMap<String, ServedRun>,
    bundle: Option<PathBuf>,
}

struct ServedRun {
    dir: PathBuf,
    /// The sweep point it is a seed of.
    group: Option<String>,
}

/// Names for run directories: their last path component, made unique; a sweep directory's
/// runs as `point/seedN`. A directory whose `sweep.json` cannot be read is an error.
fn run_names(dirs: &[PathBuf]) -> anyhow::Result<BTreeMap<String, ServedRun>> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        if dir.join("sweep.json").exists() {
            let runs = incubator_core::events::sweep::runs_of(dir)?;
            for r in runs {
                let group = Some(r.point);
                out.insert(r.name, ServedRun { dir: r.dir, group });
            }
            continue;
        }
        let base = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        let mut name = base.clone();
        let mut n = 2;
        while out.contains_key(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let run = ServedRun {
            dir: dir.clone(),
            group: None,
        };
        out.insert(name, run);
    }
    Ok(out)
}

/// The server's routes over `runs` as served on loopback without a token, without a
/// listener (tests and fuzzing send it requests).
pub fn app(runs: &[PathBuf], bundle: Option<PathBuf>) -> anyhow::Result<Router> {
    let access = access::Access::new(&Default::default(), ([127, 0, 0, 1], 0).into());
    Ok(router(
        Arc::new(Served {
            runs: run_names(runs)?,
            bundle,
        }),
        Arc::new(access),
    ))
}

fn router(served: Arc<Served>, access: Arc<access::Access>) -> Router {
    Router::new()
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{name}/config", get(run_config))
        .route("/api/runs/{name}/events", get(run_events))
        .fallback(get(static_file))
        .with_state(served)
        .layer(axum::middleware::from_fn_with_state(access, access::guard))
}

async fn list_runs(State(s): State<Arc<Served>>) -> impl IntoResponse {
    let runs: Vec<serde_json::Value> = s
        .runs
        .iter()
        .map(|(name, r)| serde_json::json!({"name": name, "group": r.group}))
        .collect();
    Json(runs)
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, what).into_response()
}

async fn run_config(State(s): State<Arc<Served>>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(dir) = s.runs.get(&name).map(|r| &r.dir) else {
        return not_found(format!("no run named {name}"));
    };
    match tokio::fs::read_to_string(dir.join("config.toml")).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(_) => not_found(format!("run {name} has no config.toml yet")),
    }
}

#[derive(serde::Deserialize)]
struct From {
    from: Option<String>,
}

async fn run_events(
    State(s): State<Arc<Served>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<From>,
    headers: HeaderMap,
) -> Response {
    let Some(dir) = s.runs.get(&name).map(|r| r.dir.clone()) else {
        return not_found(format!("no run named {name}"));
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.from);
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(CLIENT_QUEUE);
    // One task per client, which holds no thread while it waits: for the client to take
    // more records (its queue is full), or for the files to grow. Reading a file is a short
    // blocking call (at most 64 KiB per stage file per poll).
    tokio::spawn(async move {
        let mut tail = incubator_events::tail::RunTail::new(&dir, resume.as_deref());
        let mut first = true;
        loop {
            let Ok((lines, back)) = tokio::task::spawn_blocking(move || {
                let lines = tail.poll();
                (lines, tail)
            })
            .await
            else {
                return;
            };
            tail = back;
            let idle = lines.is_empty();
            for (id, line) in lines {
                if tx.send(Event::default().id(id).data(line)).await.is_err() {
                    return; // the client went away
                }
            }
            if first {
                let marker = Event::default().event("snapshot").data(tail.token());
                if tx.send(marker).await.is_err() {
                    return;
                }
                first = false;
            }
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let stream = tokio_stream::StreamExt::map(stream, Ok::<Event, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn static_file(State(s): State<Arc<Served>>, uri: axum::http::Uri) -> Response {
    let Some(root) = &s.bundle else {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            bundle::MISSING_PAGE,
        )
            .into_response();
    };
    let rel = uri.path().trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return not_found(rel.into());
    }
    match tokio::fs::read(root.join(rel)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, bundle::content_type(rel))], bytes).into_response(),
        Err(_) => not_found(rel.into()),
    }
}

/// A server listening.
pub struct Listening {
    pub addr: SocketAddr,
    /// The token requests need, if any.
    pub token: Option<String>,
}

impl Listening {
    /// The dashboard's address, with the token when one is needed.
    pub fn url(&self) -> String {
        match &self.token {
            Some(t) => format!("http://{}/?token={t}", self.addr),
            None => format!("http://{}/", self.addr),
        }
    }

    /// Prints `prefix` and the address, with a note when that reaches beyond this machine.
    pub fn announce(&self, prefix: &str) {
        outln!("{prefix}{}", self.url());
        if !self.addr.ip().is_loopback() {
            eprintln!(
                "note: listening on {}, which other machines may reach; every request needs the token in the address above",
                self.addr
            );
        }
    }
}

/// Binds `addr` and serves `runs` on a background thread, guarded by `access` (port 0 picks
/// a free port).
pub fn start(
    runs: &[PathBuf],
    addr: SocketAddr,
    bundle: Option<PathBuf>,
    access: &access::AccessArgs,
) -> anyhow::Result<Listening> {
    let served = Arc::new(Served {
        runs: run_names(runs)?,
        bundle,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // File reads run on blocking threads; at lowest priority on a busy machine they
        // finish slowly, and tokio would start one more thread (stack and malloc arena) for
        // every client waiting: a few threads take turns instead, whatever the load.
        .max_blocking_threads(BLOCKING_THREADS)
        .on_thread_start(yield_to_training)
        .enable_all()
        .build()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr}: {e}; choose another address with --addr")
        })?;
    let bound = listener.local_addr()?;
    let guard = Arc::new(access::Access::new(access, bound));
    let token = guard.token().map(str::to_string);
    let limits = listen::Limits {
        header_timeout: Duration::from_secs(access.header_timeout),
        max_connections: access.max_connections,
    };
    let app = router(served, guard);
    std::thread::spawn(move || rt.block_on(listen::serve(listener, app, limits)));
    Ok(Listening { addr: bound, token })
}

/// Runs the calling server thread only when a core would otherwise idle (Linux's SCHED_IDLE),
/// so that serving never takes a core from training in the same process (`run --serve`).
/// Training keeps every core busy in tightly synchronised steps: a server thread that
/// preempts one of its threads for a moment stalls the whole step. Where the scheduler
/// refuses, the thread keeps its normal priority.
fn yield_to_training() {
    #[cfg(target_os = "linux")]
    // SAFETY: changes only the calling thread's scheduling policy; the parameter is a valid,
    // zeroed sched_param as SCHED_IDLE requires (priority 0).
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}
