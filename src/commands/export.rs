//! `incubator export --format timm`: a run's model as timm loads it, with a check for the
//! other side: `config.json` (timm's constructor arguments), `model.safetensors` (the weights
//! under timm's names) and `check.safetensors` (some normalised test images and this engine's
//! logits for them; a PyTorch user compares timm's logits with these).

use incubator_core::checkpoint;
use incubator_core::run_dir::OWN_ENTRIES;
use incubator_core::stages::context::load_data;
use incubator_core::stages::eval::{self, ModelChoice};
use incubator_core::stages::timm::{timm_kwargs, to_timm, Tensors};
use incubator_core::train::batch::batch_maker;
use incubator_core::train::batch::patchify;
use incubator_core::train::feed::eval_images;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[arg(long, short = 'd', default_value = "runs/default")]
    pub run_dir: PathBuf,
    /// `assemble`, `e2e`, `meta`, or a safetensors file with the run's model.
    #[arg(long, default_value = "assemble", value_parser = super::eval::model_choice)]
    pub model: ModelChoice,
    /// The format: `timm` (PyTorch Image Models' VisionTransformer).
    #[arg(long, value_enum, default_value_t = ExportFormat::Timm)]
    pub format: ExportFormat,
    /// The directory to write (default: RUN/export/<model>-timm/).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// How many test images (with this engine's logits) go into check.safetensors.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub check_images: u64,
    /// Replace the files of an earlier export in the output directory.
    #[arg(long)]
    pub force: bool,
}

/// What `--format` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum ExportFormat {
    /// PyTorch Image Models' VisionTransformer
    Timm,
}

/// The files an export writes.
const FILES: [&str; 3] = ["model.safetensors", "config.json", "check.safetensors"];

/// `path` made absolute through its deepest existing ancestor (links resolved), for the
/// comparison with the run directory.
fn resolved(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut at = path.to_path_buf();
    loop {
        if let Ok(real) = at.canonicalize() {
            return missing.iter().rev().fold(real, |p: PathBuf, c| p.join(c));
        }
        match (at.file_name().map(|n| n.to_os_string()), at.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                at = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// An export never writes over the run's own files (the run directory itself, or what the
/// engine keeps in it), nor over an earlier export without `--force`.
fn check_out(out: &Path, run_root: &Path, force: bool) -> anyhow::Result<()> {
    let (o, root) = (resolved(out), resolved(run_root));
    let own = match o.strip_prefix(&root) {
        Ok(rest) => match rest.components().next() {
            None => true, // the run directory itself
            Some(first) => OWN_ENTRIES.iter().any(|e| first.as_os_str() == *e),
        },
        Err(_) => false,
    };
    if own {
        anyhow::bail!(
            "--out {} is inside the run directory {}, among the run's own files: export to {} (the default), another new directory, or outside the run",
            out.display(),
            run_root.display(),
            run_root.join("export").display()
        );
    }
    if out.exists() && !out.is_dir() {
        anyhow::bail!("--out {} is a file: give a directory", out.display());
    }
    let taken: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| std::fs::symlink_metadata(out.join(f)).is_ok())
        .collect();
    if !taken.is_empty() && !force {
        anyhow::bail!(
            "{} already holds {} (an earlier export?): pass --force to replace them, or choose another --out",
            out.display(),
            taken.join(", ")
        );
    }
    Ok(())
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let ExportFormat::Timm = args.format;
    let run = super::open_existing(&args.run_dir)?;
    let which = args.model.clone();
    let net = eval::model(&run, &which)?;
    let (weights, exported) = to_timm(&net, &run.vit)?;
    let out = args.out.clone().unwrap_or_else(|| {
        run.run
            .root
            .join("export")
            .join(format!("{}-timm", which.name()))
    });
    check_out(&out, &run.run.root, args.force)?;

    // the check: test images through this engine (computed before anything is written, so
    // that a failure leaves no partial export)
    let data = load_data(&run)?;
    let dev = run.dev();
    let maker = batch_maker(&dev, &run.cfg, &run.vit);
    let images = eval_images(&maker, data.test(), args.check_images as usize)
        .map_err(|e| anyhow::anyhow!("reading the check images: {e}"))?;
    let (c, h, w) = (run.vit.channels, run.vit.image_size, run.vit.image_size);
    let n = images.len() / (c * h * w);
    if n == 0 {
        anyhow::bail!("the run's test split has no images for check.safetensors");
    }
    let logits = {
        use dfdx::prelude::*;
        let patches = patchify(&images, (n, c, h, w), run.vit.patch_size);
        let tokens = run.vit.num_patches();
        let x = dev.tensor_from_vec(patches, (n, tokens, run.vit.patch_dim()));
        net.forward(x, 0.0, &mut incubator_core::model::Mode::eval())
            .as_vec()
    };
    let mut check = Tensors::new();
    check.insert("images".into(), (vec![n, c, h, w], images));
    check.insert("logits".into(), (vec![n, run.vit.num_classes], logits));

    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("cannot create --out {}: {e}", out.display()))?;
    checkpoint::save(&out.join(FILES[0]), &weights, &BTreeMap::new())?;
    checkpoint::write_atomic(
        &out.join(FILES[1]),
        serde_json::to_string_pretty(&timm_kwargs(&exported))?.as_bytes(),
    )?;
    checkpoint::save(&out.join(FILES[2]), &check, &BTreeMap::new())?;
    outln!(
        "{} exported for timm to {}: model.safetensors (VisionTransformer(**config['kwargs'], norm_layer=partial(nn.LayerNorm, eps=config['norm_eps'])), strict=True), check.safetensors ({n} test images and their logits here)",
        which.name(),
        out.display()
    );
    Ok(())
}
