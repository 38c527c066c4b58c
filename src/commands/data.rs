//! `incubator data fetch`.

use incubator_core::config::RunConfig;
use std::path::PathBuf;

pub fn fetch(name: &str, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let cache = cache_dir.unwrap_or_else(|| RunConfig::default().cache_dir());
    let dir = incubator_core::data::fetch(name, &cache)?;
    println!("{}", dir.display());
    eprintln!(
        "{name} is ready in {}; use it with `[data] dataset = \"{name}\"`",
        dir.display()
    );
    Ok(())
}
