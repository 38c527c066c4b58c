//! `incubator export --format timm`: a run's model as timm loads it, with a check for the
//! other side: `config.json` (timm's constructor arguments), `model.safetensors` (the weights
//! under timm's names) and `check.safetensors` (some normalised test images and this engine's
//! logits for them; a PyTorch user compares timm's logits with these).

use incubator_core::checkpoint;
use incubator_core::stages::eval::{self, ModelChoice};
use incubator_core::stages::timm::{timm_kwargs, to_timm, Tensors};
use incubator_core::stages::{context::load_data, OpenRun};
use incubator_core::train::batch::batch_maker;
use incubator_core::train::batch::patchify;
use incubator_core::train::feed::eval_images;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[arg(long, short = 'd', default_value = "runs/default")]
    pub run_dir: PathBuf,
    /// `assemble`, `e2e`, `meta`, or a safetensors file with the run's model.
    #[arg(long, default_value = "assemble")]
    pub model: String,
    /// The format: `timm` (PyTorch Image Models' VisionTransformer).
    #[arg(long, default_value = "timm")]
    pub format: String,
    /// The directory to write (default: RUN/export/<model>-timm/).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// How many test images (with this engine's logits) go into check.safetensors.
    #[arg(long, default_value_t = 8)]
    pub check_images: usize,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    if args.format != "timm" {
        anyhow::bail!(
            "--format {:?}: the format this version writes is `timm`",
            args.format
        );
    }
    let run = OpenRun::open(&args.run_dir, None, &super::plugin_sources(&[]))?;
    let which = ModelChoice::parse(&args.model);
    let net = eval::model(&run, &which)?;
    let weights = to_timm(&net, &run.vit)?;
    let out = args.out.clone().unwrap_or_else(|| {
        run.run
            .root
            .join("export")
            .join(format!("{}-timm", which.name()))
    });
    std::fs::create_dir_all(&out)?;
    checkpoint::save(&out.join("model.safetensors"), &weights, &BTreeMap::new())?;
    checkpoint::write_atomic(
        &out.join("config.json"),
        serde_json::to_string_pretty(&timm_kwargs(&run.vit))?.as_bytes(),
    )?;

    // the check: test images through this engine
    let data = load_data(&run)?;
    let dev = run.dev();
    let maker = batch_maker(&dev, &run.cfg, &run.vit);
    let images = eval_images(&maker, data.test(), args.check_images)
        .map_err(|e| anyhow::anyhow!("reading the check images: {e}"))?;
    let (c, h, w) = (run.vit.channels, run.vit.image_size, run.vit.image_size);
    let n = images.len() / (c * h * w);
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
    checkpoint::save(&out.join("check.safetensors"), &check, &BTreeMap::new())?;
    println!(
        "{} exported for timm to {}: model.safetensors (VisionTransformer(**config['kwargs'], norm_layer=partial(nn.LayerNorm, eps=config['norm_eps'])), strict=True), check.safetensors ({n} test images and their logits here)",
        which.name(),
        out.display()
    );
    Ok(())
}
