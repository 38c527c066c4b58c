//! What each fuzz target does with one input. `fuzz/fuzz_targets/*.rs` (cargo-fuzz, coverage
//! guided) call these, and `tests/fuzz_corpus.rs` replays every corpus file through them in
//! `cargo test`, so a crash once found stays fixed. Each function must return normally for any
//! input: errors are the expected answer to bad bytes, a panic is a bug.

use incubator_core::checkpoint;
use incubator_core::config::RunConfig;
use incubator_core::data::{cifar, idx};
use incubator_core::device::new_device;
use incubator_core::events::StageId;
use incubator_core::model::{HasParams, Init, Network, VitConfig};
use incubator_core::split::Split;
use incubator_core::train::state;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its folder under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("idx", idx),
    ("cifar", cifar),
    ("checkpoint", checkpoint),
    ("events", events),
    ("tail", tail),
    ("server", server),
    ("import", import),
    ("image", image),
];

/// A config file: parsed, validated, and resolved against two dataset geometries.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = RunConfig::from_toml(text, "fuzz.toml") else {
        return;
    };
    if cfg.validate().is_err() {
        return;
    }
    for (size, channels, classes) in [(28, 1, 10), (32, 3, 100)] {
        if let Ok(vit) = cfg.vit(size, channels, classes) {
            let _ = Split::resolve(&cfg, &vit);
        }
    }
}

/// An images file and a labels file (plain or gzip), split where the first two bytes say.
pub fn idx(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let rest = &data[2..];
    let at = u16::from_le_bytes([data[0], data[1]]) as usize % (rest.len() + 1);
    let (images, labels) = rest.split_at(at);
    let (ip, lp) = (
        Path::new("images-idx3-ubyte"),
        Path::new("labels-idx1-ubyte"),
    );
    let (Ok(images), Ok(labels)) = (
        idx::decode(ip, images.to_vec()),
        idx::decode(lp, labels.to_vec()),
    ) else {
        return;
    };
    if let Ok(d) = idx::dataset_from_bytes(ip, &images, lp, &labels, 10) {
        for i in 0..d.len.min(2) {
            let _ = d.image(i);
        }
    }
}

/// A CIFAR binary file; the first byte picks CIFAR-10 or CIFAR-100.
pub fn cifar(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    if let Ok(d) = cifar::dataset_from_bytes(Path::new("batch.bin"), bytes, which & 1 == 1) {
        let _ = d.image(d.len - 1);
    }
}

/// The model of the `checkpoint` seeds (a d4 ViT of one block on 28 px images, patch 7).
fn tiny_vit() -> VitConfig {
    let mut v = VitConfig::preset("mnist-small", 28, 1, Some(7), 10).expect("a preset");
    v.embed_dim = 4;
    v.depth = 1;
    v.num_heads = 1;
    v
}

/// A checkpoint file: parsed, loaded into a model, and read as a resumable training state.
pub fn checkpoint(data: &[u8]) {
    let path = Path::new("state.safetensors");
    let Ok(ck) = checkpoint::parse(path, data) else {
        return;
    };
    with_tiny_net(|net, dev| {
        let _ = ck.load_into(net, "", dev);
        let trainable = net.named_params().into_iter().map(|(n, _)| n).collect();
        let _ = state::from_checkpoint(ck, StageId::E2E, net, &trainable, dev);
    });
}

/// `body` with a fresh tiny ViT on the one device every input shares (a device's allocation
/// cache is not freed when it drops), emptied after.
fn with_tiny_net(body: impl FnOnce(&mut Network, &incubator_core::device::Dev)) {
    thread_local! {
        static DEV: incubator_core::device::Dev = new_device(0);
    }
    let dev = DEV.with(|d| d.clone());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut net = Network::vit(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &tiny_vit(),
        &[1],
    );
    body(&mut net, &dev);
    drop(net);
    dfdx::tensor::Cache::empty_cache(&dev);
}

/// A timm state dict a user imports (`incubator import`): read as a user's file (NaN and
/// infinity refused), its shapes checked as the file has them, renamed and loaded.
pub fn import(data: &[u8]) {
    let path = Path::new("timm.safetensors");
    let Ok(ck) =
        checkpoint::parse(path, data).and_then(|ck| checkpoint::refuse_non_finite(path, ck))
    else {
        return;
    };
    with_tiny_net(|net, dev| {
        let _ = incubator_core::stages::timm::load_into(ck, net, &tiny_vit(), dev);
    });
}

/// An image file as the folder loader decodes it, any format, under a pixel limit (what a
/// header declares is refused above it before anything is decoded).
pub fn image(data: &[u8]) {
    let _ = incubator_core::data::folder::transform::decode_bytes(data, 1 << 16);
}

/// The tiny ViT of [`with_tiny_net`] in timm's names (the import target's seed).
pub fn tiny_timm_tensors() -> incubator_core::stages::timm::Tensors {
    let mut out = None;
    with_tiny_net(|net, _| {
        out = Some(
            incubator_core::stages::timm::to_timm(net, &tiny_vit())
                .expect("a plain ViT")
                .0,
        )
    });
    out.expect("set")
}

/// An event file (`events/<stage>.jsonl`) as the report and the dashboard read it.
pub fn events(data: &[u8]) {
    let mut out = Vec::new();
    let _ = incubator_core::telemetry::jsonl::parse_lines(Path::new("meta.jsonl"), data, &mut out);
}

/// A folder of its own for this process's files: made at a name nobody can plant beforehand
/// (one from the process id could be a link to someone else's folder), and removed when the
/// process exits (fuzzers and `cargo test` end by `exit`, which runs `atexit` handlers; the
/// folders live in statics, which are never dropped).
fn scratch(name: &str) -> PathBuf {
    static MADE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    extern "C" fn remove_made() {
        if let Ok(made) = MADE.lock() {
            for dir in made.iter() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("incubator-fuzz-{name}-"))
        .tempdir()
        .expect("a scratch folder")
        .keep();
    std::fs::create_dir_all(dir.join("events")).expect("a scratch folder");
    let mut made = MADE.lock().expect("scratch folders");
    if made.is_empty() {
        // SAFETY: registers a function that takes no arguments and does not unwind (it
        // ignores every error)
        unsafe { libc::atexit(remove_made) };
    }
    made.push(dir.clone());
    dir
}

/// Following an event file from a client's position: the first line is the `Last-Event-ID`
/// token a client sends back, the rest the file's contents.
pub fn tail(data: &[u8]) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| scratch("tail"));
    let (token, file) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let token = String::from_utf8_lossy(token);
    std::fs::write(dir.join("events/meta.jsonl"), file).expect("scratch is writable");
    let mut t = incubator_events::tail::RunTail::new(dir, Some(&token));
    let _ = t.poll();
    let _ = incubator_events::tail::RunTail::new(dir, Some(&t.token())).poll();
}

/// One HTTP request to the live server: the first line is the request target (path and
/// query), the second the `Last-Event-ID` header. The answer's body is read until it ends, a
/// stream's backlog has been sent, or 50 ms pass.
pub fn server(data: &[u8]) {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let last_id = lines.next();
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let mut req = axum::http::Request::builder().uri(target);
    if let Some(v) = last_id.and_then(|v| axum::http::HeaderValue::from_bytes(v).ok()) {
        req = req.header("last-event-id", v);
    }
    let Ok(req) = req.body(axum::body::Body::empty()) else {
        return;
    };
    let (rt, app) = served();
    let panics_before = SERVER_PANICS.load(Ordering::SeqCst);
    rt.block_on(async {
        use tower::ServiceExt;
        let Ok(resp) = app.clone().oneshot(req).await;
        let mut body = resp.into_body().into_data_stream();
        let read = async {
            let mut seen = 0usize;
            while let Some(Ok(chunk)) = tokio_stream::StreamExt::next(&mut body).await {
                seen += chunk.len();
                if seen > 1 << 16 || chunk.windows(8).any(|w| w == b"snapshot") {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), read).await;
    });
    // A panic inside a server task only ends that task (and the client's answer); it is a
    // bug all the same, so it fails this input.
    assert_eq!(
        SERVER_PANICS.load(Ordering::SeqCst),
        panics_before,
        "the server panicked while answering {target:?}"
    );
}

/// Panics on the server's runtime threads, counted by a hook installed with the server.
static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

/// The server of the `server` target: one run with a few events, and a bundle folder.
fn served() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static SERVED: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    SERVED.get_or_init(|| {
        let dir = scratch("server");
        let run = dir.join("run");
        std::fs::create_dir_all(run.join("events")).expect("scratch");
        std::fs::write(run.join("config.toml"), RunConfig::default().to_toml()).expect("scratch");
        let lines = concat!(
            r#"{"v":1,"time":1.0,"stage":{"stage":"meta"},"event":"stage_skipped","reason":"x"}"#,
            "\n",
            r#"{"v":1,"time":2.0,"stage":{"stage":"meta"},"event":"stage_failed","error":"x"}"#,
            "\n",
        );
        std::fs::write(run.join("events/meta.jsonl"), lines).expect("scratch");
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).expect("scratch");
        std::fs::write(bundle.join("index.html"), "<!doctype html>").expect("scratch");
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("fuzz-server"))
            {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info)
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fuzz-server")
            .enable_all()
            .build()
            .expect("a runtime");
        (
            rt,
            crate::serve::app(&[run], Some(bundle)).expect("a plain run directory"),
        )
    })
}
