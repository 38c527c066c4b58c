//! `incubator bench-loader`: images per second of the image-folder loader with the DeiT
//! training pipeline, and with `--torchvision PYTHON` of torchvision's DataLoader with timm's
//! same transform on the same folder, the same workers and batch, in the same command, with
//! the ratio: absolute rates on a shared machine say little.

use clap::Args;
use incubator_core::config::RunConfig;
use incubator_core::data::folder::{list_classes, FolderSplit, Stream};
use incubator_core::train::folder_pipelines::pipelines;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchLoaderArgs {
    /// An image folder (train/<class>/...; `incubator data folder` makes one).
    pub folder: PathBuf,
    /// Decoding threads (and torchvision's num_workers).
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=256))]
    workers: usize,
    /// Batches decoded ahead per worker (torchvision's prefetch_factor).
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    prefetch: usize,
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    batch: usize,
    /// Timed batches, after one warm-up batch.
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100000))]
    batches: usize,
    /// The crops' side.
    #[arg(long, default_value_t = 224, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(8..=2048))]
    size: usize,
    /// A Python with torch, torchvision and timm: also measure their DataLoader.
    #[arg(long, value_name = "PYTHON")]
    torchvision: Option<PathBuf>,
}

pub fn run(a: &BenchLoaderArgs) -> anyhow::Result<()> {
    let classes = list_classes(&a.folder)?;
    let train = FolderSplit::open(&a.folder, classes)?.train;
    let need = (a.batches + 1) * a.batch;
    if train.len() < need {
        anyhow::bail!(
            "{} has {} training images; {} batches of {} after a warm-up need {need}: lower --batches or --batch",
            a.folder.display(),
            train.len(),
            a.batches,
            a.batch
        );
    }
    let mut cfg = RunConfig::default();
    cfg.augment.hflip = true;
    cfg.data.workers = Some(a.workers);
    cfg.data.prefetch = a.prefetch;
    let p = pipelines(&cfg, a.size);
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let batches = order[..need]
        .chunks(a.batch)
        .map(<[usize]>::to_vec)
        .collect();
    let mut stream = Stream::new(train.clone(), p.train.clone(), batches, 0, 0, p.loader);
    stream
        .next_batch()
        .expect("a warm-up batch")
        .map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    let mut n = 0;
    while let Some(b) = stream.next_batch() {
        n += b.map_err(anyhow::Error::msg)?.labels.len();
    }
    let ours = n as f64 / start.elapsed().as_secs_f64();
    drop(stream);
    outln!(
        "{}: {} training images; DeiT training pipeline at {} px, batch {}, {} workers x prefetch {}, {} timed batches after 1 warm-up",
        a.folder.display(),
        train.len(),
        a.size,
        a.batch,
        a.workers,
        a.prefetch,
        a.batches
    );
    let Some(python) = &a.torchvision else {
        outln!("| loader | images/s |\n|---|---:|\n| incubator | {ours:.0} |");
        return Ok(());
    };
    // the script as `-c` source: no file in the temporary folder, where a name that comes
    // from the process id could be planted beforehand
    let out = std::process::Command::new(python)
        .args([
            "-c",
            include_str!("../../scripts/reference/loader_bench.py"),
        ])
        .args(["--folder", &a.folder.to_string_lossy()])
        .args(["--workers", &a.workers.to_string()])
        .args(["--prefetch", &a.prefetch.to_string()])
        .args(["--batch", &a.batch.to_string()])
        .args(["--batches", &a.batches.to_string()])
        .args(["--size", &a.size.to_string()])
        .output();
    let out = out.map_err(|e| anyhow::anyhow!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "torchvision's loader failed ({}): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let figures: serde_json::Value = serde_json::from_slice(
        out.stdout
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap_or_default(),
    )?;
    let theirs = figures["images_per_s"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("the torchvision script printed no rate: {figures}"))?;
    outln!("| loader | images/s |\n|---|---:|");
    outln!("| incubator | {ours:.0} |");
    outln!(
        "| torchvision DataLoader + timm transform (torch {}) | {theirs:.0} |",
        figures["torch"].as_str().unwrap_or("?")
    );
    outln!("ratio (incubator / torchvision): {:.2}", ours / theirs);
    Ok(())
}
