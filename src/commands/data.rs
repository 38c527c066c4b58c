//! `incubator data fetch` and `incubator data folder`.

use incubator_core::config::RunConfig;
use std::path::PathBuf;

pub fn fetch(name: &str, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let cache = cache_dir.unwrap_or_else(|| RunConfig::default().cache_dir());
    let dir = incubator_core::data::fetch(name, &cache)?;
    outln!("{}", dir.display());
    eprintln!(
        "{name} is ready in {}; use it with `[data] dataset = \"{name}\"`",
        dir.display()
    );
    Ok(())
}

/// What `--format` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum FormatArg {
    Png,
    #[value(alias = "jpg")]
    Jpeg,
}

#[derive(clap::Args, Debug)]
pub struct FolderArgs {
    /// The dataset to write out (embedded-mnist, mnist, fashion-mnist, cifar10, cifar100).
    pub name: String,
    /// The folder to make (it gets train/ and val/).
    #[arg(long)]
    pub out: PathBuf,
    /// The image files' format.
    #[arg(long, value_enum, default_value_t = FormatArg::Png)]
    pub format: FormatArg,
    /// Resize every image to this side (bicubic), e.g. to give the loader work of ImageNet's size.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(1..=4096))]
    pub side: Option<u32>,
    /// Where the dataset's files are (default: the fetch cache).
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Write only the first N training / test images (0: all).
    #[arg(long, default_value_t = 0)]
    pub train_limit: usize,
    #[arg(long, default_value_t = 0)]
    pub test_limit: usize,
}

pub fn folder(a: &FolderArgs) -> anyhow::Result<()> {
    use incubator_core::data::folder::write::{write_folder, ImageFormat};
    let name: incubator_core::data::DatasetName = a.name.parse()?;
    let format = match a.format {
        FormatArg::Png => ImageFormat::Png,
        FormatArg::Jpeg => ImageFormat::Jpeg,
    };
    let mut split = incubator_core::data::load(
        &name,
        a.data_path.as_deref(),
        &RunConfig::default().cache_dir(),
    )?;
    if a.train_limit > 0 {
        split.train.truncate(a.train_limit);
    }
    if a.test_limit > 0 {
        split.test.truncate(a.test_limit);
    }
    if a.out.exists() && !a.out.is_dir() {
        anyhow::bail!(
            "--out {} is a file: give a directory (nothing was written)",
            a.out.display()
        );
    }
    if a.out.join("train").exists() || a.out.join("val").exists() {
        anyhow::bail!(
            "{} already has train/ or val/; choose a new --out (nothing was written)",
            a.out.display()
        );
    }
    let n = write_folder(&split, &a.out, format, a.side).map_err(|e| {
        anyhow::anyhow!(
            "writing the image folder {}: {e}. Nothing of it was kept: fix that and run the same command again",
            a.out.display()
        )
    })?;
    outln!("{}", a.out.display());
    eprintln!(
        "{n} images of {name} written to {} ({} train, {} val); use it with `[data] dataset = \"folder\"`, `path = {:?}`",
        a.out.display(),
        split.train.len,
        split.test.len,
        a.out.display().to_string()
    );
    Ok(())
}
