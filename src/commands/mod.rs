pub mod bench;
pub mod bench_loader;
pub mod data;
pub mod eval;
pub mod export;
pub mod plugins;
pub mod scaffold;
pub mod serve_load;
pub mod stage;

use incubator_core::plugin::Registrar;
use incubator_core::stages::PluginSources;
use std::path::PathBuf;

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
