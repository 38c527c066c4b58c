//! `incubator plugins list` and `incubator plugins check FILE`.

use incubator_core::config::RunConfig;
use incubator_core::plugin::{abi, loader, Registry};
use std::path::{Path, PathBuf};

pub fn list(config: &[PathBuf], extra: &[PathBuf]) -> anyhow::Result<()> {
    let plugins = match config {
        [] => RunConfig::default().plugins,
        layers => RunConfig::load_layers(layers)?.plugins,
    };
    let (registry, _) = Registry::for_run(&plugins, &super::builtins, extra)?;
    outln!("{:<12} {:<20} {:<10} origin", "kind", "name", "version");
    for l in registry.list() {
        outln!(
            "{:<12} {:<20} {:<10} {}",
            l.kind,
            l.name,
            l.version,
            l.origin
        );
        print_options(&l.options, "             ");
    }
    Ok(())
}

pub fn check(file: &Path) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let loaded = loader::load(file, &mut registry)?;
    outln!(
        "{}: plugin {} {} fits this engine (ABI {}, engine {} build {}, {}, features [{}], {})",
        loaded.path.display(),
        loaded.name,
        loaded.version,
        abi::ABI_VERSION,
        abi::ENGINE_VERSION,
        abi::ENGINE_BUILD,
        abi::RUSTC,
        abi::FEATURES,
        abi::PROFILE
    );
    for l in registry.list() {
        outln!("  {:<12} {}", l.kind, l.name);
        print_options(&l.options, "    ");
    }
    Ok(())
}

/// A plugin's `[plugins.options]`, one per line.
fn print_options(options: &[incubator_core::plugin::OptionSpec], indent: &str) {
    for o in options {
        outln!("{indent}option {o}");
    }
}
