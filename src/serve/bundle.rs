//! Finding the built WASM dashboard (`scripts/build-wasm.sh` writes it to `dashboard/dist`).

use std::path::{Path, PathBuf};

/// The bundle directory: `--bundle`, else `$INCUBATOR_DASHBOARD_DIST`, else `dashboard/dist`
/// of the repository this binary was built in (found from the binary's path,
/// `target/<profile>/incubator`), else `dashboard/dist` under the current directory.
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(explicit.map(Path::to_path_buf));
    candidates.extend(std::env::var_os("INCUBATOR_DASHBOARD_DIST").map(PathBuf::from));
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join("dashboard/dist"));
        }
    }
    candidates.push(PathBuf::from("dashboard/dist"));
    candidates
        .into_iter()
        .find(|d| d.join("index.html").is_file())
}

pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript",
        "wasm" => "application/wasm",
        "css" => "text/css",
        "png" => "image/png",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// Served at `/` when no bundle was found: the API works, the page says how to get the app.
pub const MISSING_PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>incubator</title>
<h1>incubator live server</h1>
<p>The dashboard bundle was not found. Build it with <code>./scripts/build-wasm.sh</code> (it
writes <code>dashboard/dist</code>), or pass <code>--bundle DIR</code>. Meanwhile the stream is here:
<a href="/api/runs">/api/runs</a>, <code>/api/runs/NAME/events</code> (server-sent events).</p>
"#;
