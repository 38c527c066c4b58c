pub mod bench;
pub mod bench_loader;
pub mod data;
pub mod eval;
pub mod export;
pub mod plugins;
pub mod rounds;
pub mod serve_load;
pub mod stage;

use incubator_core::plugin::Registrar;
use incubator_core::run_dir::OpenMode;
use incubator_core::stages::{OpenRun, PluginSources};
use std::path::{Path, PathBuf};

/// Registers the plugins compiled into this binary.
pub fn builtins(r: &mut Registrar) {
    incubator_deep_incubation::register(r);
}

pub fn plugin_sources(extra: &[PathBuf]) -> PluginSources<'static> {
    PluginSources {
        builtins: &builtins,
        extra: extra.to_vec(),
    }
}

/// The run at `run_dir` as it was made (its config and plugins, not its data), for commands
/// that continue or read a run: a path with no run is an error, and nothing is created.
pub fn open_existing(run_dir: &Path) -> anyhow::Result<OpenRun> {
    OpenRun::open(run_dir, None, OpenMode::Existing, &plugin_sources(&[]))
}
