//! A new plugin crate, copied from `plugins/template` with its names changed, either in the
//! engine's workspace (`plugins/NAME`) or as a crate of its own outside it. `incubator plugin
//! new` and the `incubator-new-plugin` binary of this crate both make them; this crate needs
//! nothing but the standard library, so `cargo run -p incubator-scaffold -- NAME --path DIR`
//! makes an out-of-tree plugin in seconds, without a build of the engine.
//!
//! A plugin links the very engine library the binary uses (core/src/plugin/abi.rs), so the
//! two must come from one build. In the workspace, `cargo build --workspace` builds both. Out
//! of tree, the crate depends on the engine (by path or git) and carries a two-line binary that
//! runs the engine's command line, so `cargo build` in its folder builds the plugin, the engine
//! and `incubator` together; it starts from the engine's `Cargo.lock`, so it uses the versions
//! the engine was tested with.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a plugin crate was not made. Nothing is written before the checks pass.
#[derive(Debug)]
pub enum ScaffoldError {
    BadName(String),
    /// `--path` names a folder that holds something already.
    NotEmpty(PathBuf),
    /// `--workspace` is not the engine's repository root.
    NotTheWorkspace(PathBuf),
    /// `--engine` is not the engine's repository root.
    NotTheEngine(PathBuf),
    /// The plugin already exists in the workspace.
    Exists(PathBuf),
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for ScaffoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaffoldError::BadName(name) => write!(
                f,
                "plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter (e.g. feature-kd)"
            ),
            ScaffoldError::NotEmpty(dir) => write!(
                f,
                "{} exists and is not empty; choose a new folder",
                dir.display()
            ),
            ScaffoldError::NotTheWorkspace(ws) => write!(
                f,
                "{} is not the incubator workspace (no Cargo.toml with [workspace] and plugins/ beside it); run this at the repository root or pass --workspace: a plugin is built in the engine's workspace so that it links the same engine library",
                ws.display()
            ),
            ScaffoldError::NotTheEngine(root) => write!(
                f,
                "{} is not the incubator repository (no core/Cargo.toml and src/cli.rs); pass its root with --engine, or --engine-git URL",
                root.display()
            ),
            ScaffoldError::Exists(dir) => {
                write!(f, "{} already exists; choose another name", dir.display())
            }
            ScaffoldError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ScaffoldError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScaffoldError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `text` to `path`, making its folder.
fn write(path: &Path, text: impl AsRef<[u8]>) -> Result<(), ScaffoldError> {
    let parent = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    std::fs::write(path, text).map_err(io(path))
}

const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../plugins/template/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../plugins/template/src/lib.rs"),
    ),
    (
        "tests/library.rs",
        include_str!("../../../plugins/template/tests/library.rs"),
    ),
];

fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    Ok(())
}

fn camel_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The template's text with its names replaced by `name`'s.
pub fn render(text: &str, name: &str) -> String {
    text.replace("incubator-template", &format!("incubator-{name}"))
        .replace(
            "incubator_template",
            &format!("incubator_{}", name.replace('-', "_")),
        )
        .replace("\"template\"", &format!("\"{name}\""))
        .replace("\\\"template\\\"", &format!("\\\"{name}\\\""))
        .replace("`template`", &format!("`{name}`"))
        .replace("Template", &camel_case(name))
}

/// Where an out-of-tree plugin takes the engine from.
pub enum EngineSource {
    Path(PathBuf),
    Git { url: String, rev: Option<String> },
}

impl EngineSource {
    /// The dependency table of the engine's package at `dir` in the repository (`""`: root).
    fn dependency(&self, dir: &str) -> String {
        match self {
            EngineSource::Path(root) => {
                let path = if dir.is_empty() {
                    root.clone()
                } else {
                    root.join(dir)
                };
                format!("{{ path = {:?} }}", path.display().to_string())
            }
            EngineSource::Git { url, rev } => match rev {
                Some(rev) => format!("{{ git = {url:?}, rev = {rev:?} }}"),
                None => format!("{{ git = {url:?} }}"),
            },
        }
    }
}

/// The out-of-tree crate's manifest: its plugin library, the `incubator` binary built around
/// the same engine, and the engine's build profiles (shared standard library, rpath).
fn out_of_tree_manifest(name: &str, engine: &EngineSource) -> String {
    format!(
        r#"# A plugin crate for incubator, outside the engine's repository. `cargo build --release` here
# builds the plugin library (target/release/libincubator_{lib}.so) and the `incubator` binary
# around the same engine build: run that binary with the library (see README.md).
[package]
name = "incubator-{name}"
description = "An incubator plugin"
version = "0.1.0"
edition = "2021"

# rlib: compiled into this crate's test; cdylib: the library `plugins.libraries` loads.
[lib]
crate-type = ["rlib", "cdylib"]

# The engine's command line, linked to the engine this plugin is built against.
[[bin]]
name = "incubator"
path = "src/main.rs"
test = false

# Only the engine: its SDK re-exports dfdx, serde and schemars; a second dfdx would not train with it.
[dependencies]
incubator-core = {core}
incubator = {cli}

[dev-dependencies]
incubator-deep-incubation = {reference}
incubator-testkit = {testkit}
tempfile = "3"

# Its own workspace, with the engine's profiles: the engine library is built as the engine's
# own workspace builds it. There its crates are members, at opt-level 1 in debug builds; here
# they are dependencies, which "*" would compile at 3 (slower to build, and not the engine
# the engine's tests tested). Keep its own target directory: a target shared with the
# engine's checkout has each workspace overwrite the other's engine build.
[workspace]

[profile.dev]
opt-level = 1
rpath = true

[profile.dev.package."*"]
opt-level = 3
{engine_opt_levels}
[profile.test]
opt-level = 1
rpath = true

[profile.release]
rpath = true
debug = "line-tables-only"
"#,
        lib = name.replace('-', "_"),
        core = engine.dependency("core"),
        cli = engine.dependency(""),
        reference = engine.dependency("plugins/deep-incubation"),
        testkit = engine.dependency("core/testkit"),
        engine_opt_levels = ENGINE_CRATES
            .iter()
            .map(|c| format!("\n[profile.dev.package.{c}]\nopt-level = 1\n"))
            .collect::<String>(),
    )
}

/// The engine's crates an out-of-tree plugin builds (members of the engine's workspace).
const ENGINE_CRATES: &[&str] = &[
    "incubator",
    "incubator-core",
    "incubator-events",
    "incubator-compare",
    "incubator-deep-incubation",
    "incubator-testkit",
    "incubator-scaffold",
];

const MAIN_RS: &str = r#"//! The `incubator` command line, built with this plugin's engine: run it with this crate's
//! library (`plugins.libraries` or `--plugin`). It does not link the plugin itself.

fn main() -> std::process::ExitCode {
    incubator::cli::main()
}
"#;

/// The engine's `.cargo/config.toml` (the shared standard library) and its toolchain file.
const CARGO_CONFIG: &str = include_str!("../../../.cargo/config.toml");
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

fn readme(name: &str) -> String {
    format!(
        r#"# incubator-{name}

An incubation strategy for [incubator](https://github.com/), built outside the engine's
repository. Edit `src/lib.rs` (the engine's docs/plugins.md explains the interfaces), then:

```sh
cargo test --release            # the library loaded vs compiled in: bit-identical training
cargo build --release           # target/release/libincubator_{lib}.so and target/release/incubator
./target/release/incubator run -c my.toml
```

with, in `my.toml`:

```toml
[plugins]
strategy = "{name}"
libraries = ["target/release/libincubator_{lib}.so"]   # relative to my.toml
```

Both commands use the release profile, so the engine is built once, for the tests and the
binary alike (a plain `cargo test` would build it a second time, in debug). Keep this crate's
own `target/`: a target directory shared with the engine's checkout has the two workspaces
overwrite each other's build of the engine.

Run the `incubator` built here, not another build: a plugin loads only into the engine build it
was compiled with (another build refuses it and says why). The engine is a dependency in
Cargo.toml (by path or git); update it and rebuild both with `cargo build --release`.
"#,
        lib = name.replace('-', "_")
    )
}

/// A new plugin crate at `dir`, outside any workspace, depending on `engine`.
pub fn new_out_of_tree(
    name: &str,
    dir: &Path,
    engine: &EngineSource,
) -> Result<PathBuf, ScaffoldError> {
    check_name(name)?;
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
    }
    if let EngineSource::Path(root) = engine {
        if !root.join("core/Cargo.toml").is_file() || !root.join("src/cli.rs").is_file() {
            return Err(ScaffoldError::NotTheEngine(root.clone()));
        }
    }
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", out_of_tree_manifest(name, engine)),
        ("src/lib.rs", render(FILES[1].1, name)),
        ("src/main.rs", MAIN_RS.to_string()),
        ("tests/library.rs", render(FILES[2].1, name)),
        (".cargo/config.toml", CARGO_CONFIG.to_string()),
        ("rust-toolchain.toml", TOOLCHAIN.to_string()),
        ("README.md", readme(name)),
        (
            ".gitignore",
            "/target
"
            .to_string(),
        ),
    ];
    for (file, text) in files {
        write(&dir.join(file), text)?;
    }
    // The versions the engine was tested with (cargo drops what this crate does not use).
    if let EngineSource::Path(root) = engine {
        if let Ok(lock) = std::fs::read(root.join("Cargo.lock")) {
            write(&dir.join("Cargo.lock"), lock)?;
        }
    }
    Ok(dir.to_path_buf())
}

/// A new plugin crate in the engine's workspace at `workspace`, in its `plugins/`.
pub fn new_plugin(name: &str, workspace: &Path) -> Result<PathBuf, ScaffoldError> {
    check_name(name)?;
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("[workspace]") || !workspace.join("plugins").is_dir() {
        return Err(ScaffoldError::NotTheWorkspace(workspace.to_path_buf()));
    }
    let dir = workspace.join("plugins").join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    for (file, text) in FILES {
        write(&dir.join(file), render(text, name))?;
    }
    Ok(dir)
}

/// What to do with the out-of-tree crate just made at `dir`.
pub fn next_steps_out_of_tree(name: &str, dir: &Path) -> String {
    format!(
        "created {dir}, a plugin crate outside the engine's workspace\nnext (in {dir}):\n  edit src/lib.rs (the engine's docs/plugins.md explains the interfaces)\n  cargo test --release       # compiled in vs loaded: bit-identical (builds the engine once)\n  cargo build --release      # the plugin library and the incubator binary, from that same build\n  ./target/release/incubator run -c my.toml   with [plugins] strategy = \"{name}\", libraries = [\"target/release/libincubator_{lib}.so\"]",
        dir = dir.display(),
        lib = name.replace('-', "_")
    )
}

/// What to do with the workspace plugin just made at `dir`.
pub fn next_steps_in_workspace(name: &str, dir: &Path) -> String {
    format!(
        "created {dir}\nnext:\n  edit {dir}/src/lib.rs (docs/plugins.md explains the interfaces)\n  cargo test -p incubator-{name}          # compiled in vs loaded: bit-identical\n  cargo build --release --workspace\n  in your config: [plugins] strategy = \"{name}\", libraries = [\"target/release/libincubator_{lib}.so\"]",
        dir = dir.display(),
        lib = name.replace('-', "_")
    )
}
