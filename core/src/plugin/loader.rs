//! Loading plugin libraries with libloading: the handshake of `abi.rs`, field by field, then
//! registration. Libraries are never unloaded (thread-local destructors and the vtables of
//! registered plugins live in them).

use super::abi::{self, Manifest, RegisterFn};
use super::registry::{Origin, Registrar, Registry};
use std::path::{Path, PathBuf};

/// Why a library was refused, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin library {path} does not exist (no such file). Check the path in plugins.libraries (relative paths are relative to the config file) or --plugin, and build the library first (`cargo build --release -p <plugin crate>` makes target/release/lib<name>.so)")]
    NotFound { path: PathBuf },
    #[error("plugin {path}: cannot load it as a shared library: {reason}. Give the path of a plugin library in plugins.libraries or --plugin (lib<name>.so from `cargo build -p <plugin crate>`)")]
    NotALibrary { path: PathBuf, reason: String },
    #[error("plugin {path} was built against another build of the engine library than this binary's ({reason}). A plugin loads only into the engine it was built with: in the engine's workspace, build both in one command (`cargo build --release --workspace`) and run that build's target/release/incubator; an out-of-tree plugin crate builds its own incubator beside its library (its target/<profile>/incubator): run that one")]
    StaleLink { path: PathBuf, reason: String },
    #[error("plugin {path}: no `{symbol}` symbol, so it is not an incubator plugin. Declare it with `incubator_core::declare_plugin!` (see plugins/template)")]
    MissingSymbol { path: PathBuf, symbol: String },
    #[error("plugin {path}: plugin ABI version {found}, this engine speaks {expected}. Rebuild the plugin against this engine (cargo build -p <plugin crate> in this workspace)")]
    AbiVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("plugin {path} ({name}) was built for another engine:\n{fields}\nRebuild the plugin in the same workspace and profile as the engine, e.g. `cargo build --release --workspace`")]
    Mismatch {
        path: PathBuf,
        name: String,
        fields: String,
    },
    #[error("plugin {path} ({name}) is linked to a second copy of the engine library, so its tensors would not train with the engine's (two dfdx tensor-id counters). Build it with the workspace's .cargo/config.toml (`-C prefer-dynamic`) and depend only on incubator-core, not on dfdx directly")]
    SecondEngine { path: PathBuf, name: String },
    #[error("plugin {path} ({name}) failed to register: {message}")]
    Register {
        path: PathBuf,
        name: String,
        message: String,
    },
    #[error("plugin {path} ({name}): {source}")]
    Clash {
        path: PathBuf,
        name: String,
        source: super::registry::RegistryError,
    },
    #[error("plugin directory {path}: {reason}")]
    Directory { path: PathBuf, reason: String },
}

/// What a library declared, once it passed the handshake.
#[derive(Clone, Debug)]
pub struct LoadedLibrary {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
}

/// Every plugin library in `path`: the file itself, or the `*.so` / `*.dylib` / `*.dll` files of
/// a directory, in name order.
pub fn library_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir_err = |e: std::io::Error| LoadError::Directory {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(dir_err)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            p.is_file() && matches!(ext, "so" | "dylib" | "dll")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// libloading says "dlopen failed" and keeps the dynamic linker's own words in its source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Checks one library's handshake and registers its items into `registry`.
pub fn load(path: &Path, registry: &mut Registry) -> Result<LoadedLibrary, LoadError> {
    let path = std::fs::canonicalize(path).map_err(|_| LoadError::NotFound {
        path: path.to_path_buf(),
    })?;
    // dlopen would wait forever on a FIFO for a writer
    if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err(LoadError::NotALibrary {
            path: path.clone(),
            reason: "it is not a regular file (a FIFO, directory, socket or device)".into(),
        });
    }
    // SAFETY: loading runs the library's initialisers; a plugin library is trusted code by
    // the user's choice (as any crate they compile in).
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
        let reason = with_causes(&e);
        if reason.contains("undefined symbol") {
            LoadError::StaleLink {
                path: path.clone(),
                reason,
            }
        } else {
            LoadError::NotALibrary {
                path: path.clone(),
                reason,
            }
        }
    })?;
    // Never unloaded, even when refused: a library's thread-local destructors and the code of
    // anything it created must outlive every use (rust-lang/rust#59629).
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    let missing = |symbol: &[u8]| LoadError::MissingSymbol {
        path: path.clone(),
        symbol: String::from_utf8_lossy(&symbol[..symbol.len() - 1]).into_owned(),
    };

    // 1. The ABI version: a plain integer, readable whatever else differs.
    let found = unsafe {
        let sym = lib
            .get::<*const u32>(abi::ABI_SYMBOL)
            .map_err(|_| missing(abi::ABI_SYMBOL))?;
        **sym
    };
    if found != abi::ABI_VERSION {
        return Err(LoadError::AbiVersion {
            path,
            found,
            expected: abi::ABI_VERSION,
        });
    }

    // 2. The manifest: C strings only.
    let manifest: &Manifest = unsafe {
        let sym = lib
            .get::<*const Manifest>(abi::MANIFEST_SYMBOL)
            .map_err(|_| missing(abi::MANIFEST_SYMBOL))?;
        &**sym
    };
    let read = |p| unsafe { abi::manifest_str(p) };
    let name = read(manifest.plugin_name);
    let version = read(manifest.plugin_version);
    let checks = [
        ("rustc", read(manifest.rustc), abi::RUSTC),
        (
            "engine version",
            read(manifest.engine_version),
            abi::ENGINE_VERSION,
        ),
        (
            "engine build",
            read(manifest.engine_build),
            abi::ENGINE_BUILD,
        ),
        ("features", read(manifest.features), abi::FEATURES),
        ("profile", read(manifest.profile), abi::PROFILE),
    ];
    let differences: Vec<String> = checks
        .iter()
        .filter(|(_, plugin, host)| plugin != host)
        .map(|(field, plugin, host)| {
            let show = |s: &str| {
                if s.is_empty() {
                    "(none)".to_string()
                } else {
                    s.to_string()
                }
            };
            format!(
                "  {field}: plugin built with {}, engine has {}",
                show(plugin),
                show(host)
            )
        })
        .collect();
    if !differences.is_empty() {
        return Err(LoadError::Mismatch {
            path,
            name,
            fields: differences.join("\n"),
        });
    }

    // 3. One engine in the process: the plugin's engine library is ours.
    if (manifest.engine_instance)() != abi::engine_instance() {
        return Err(LoadError::SecondEngine { path, name });
    }

    // 4. Registration (panics are caught inside the plugin's entry point).
    let register: RegisterFn = unsafe {
        *lib.get::<RegisterFn>(abi::REGISTER_SYMBOL)
            .map_err(|_| missing(abi::REGISTER_SYMBOL))?
    };
    let mut registrar = Registrar::new(Origin::Library(path.clone()), &version);
    let message = unsafe { register(&mut registrar as *mut Registrar as *mut std::ffi::c_void) };
    if !message.is_null() {
        // SAFETY: made by `CString::into_raw` in the plugin, with the one allocator we share.
        let message = unsafe { std::ffi::CString::from_raw(message) }
            .to_string_lossy()
            .into_owned();
        return Err(LoadError::Register {
            path,
            name,
            message,
        });
    }
    if let Err(source) = registry.add(registrar) {
        return Err(LoadError::Clash { path, name, source });
    }
    Ok(LoadedLibrary {
        path,
        name,
        version,
    })
}

/// The registry is filled here, where libraries are loaded, so that the registry knows
/// nothing of loading (it only keeps what was registered).
impl Registry {
    /// The registry a run uses: the built-ins (unless `plugins.builtins = false`), then every
    /// library of `plugins.libraries` and of `extra` (command-line `--plugin`), in order.
    pub fn for_run(
        plugins: &crate::config::PluginSection,
        builtins: &dyn Fn(&mut Registrar),
        extra: &[PathBuf],
    ) -> Result<(Registry, Vec<LoadedLibrary>), LoadError> {
        let mut registry = Registry::empty(!plugins.builtins);
        if plugins.builtins {
            let mut r = Registrar::new(Origin::BuiltIn, env!("CARGO_PKG_VERSION"));
            builtins(&mut r);
            registry.add(r).expect("built-in plugin names are distinct");
        }
        let mut loaded = Vec::new();
        for path in plugins.libraries.iter().chain(extra) {
            for file in library_files(path)? {
                loaded.push(load(&file, &mut registry)?);
            }
        }
        Ok((registry, loaded))
    }
}
