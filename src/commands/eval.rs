//! `incubator eval`: a run's model (or a checkpoint of its shape) on a dataset split, with
//! top-1, top-5, loss and the confusion matrix as CSV and PNG.

use incubator_core::data::DatasetName;
use incubator_core::events::EvalSplit;
use incubator_core::stages::context::{load_data, load_other};
use incubator_core::stages::eval::{self, ModelChoice};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[arg(long, short = 'd', default_value = "runs/default")]
    pub run_dir: PathBuf,
    /// `assemble`, `e2e`, `meta`, or a safetensors file with the run's model (a plain ViT).
    #[arg(long, default_value = "assemble", value_parser = model_choice)]
    pub model: ModelChoice,
    /// `test`, `val` (the validation split the run holds out of its training images) or
    /// `train` (the images trained on, without the validation split).
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// Another dataset with the same images and classes (`mnist`, `fashion-mnist`, ...), whole;
    /// default: the run's own, with its limits, as training evaluated it.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Where that dataset's files are (default: `incubator data fetch`'s cache).
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Where the results go (default: RUN/eval/<model>-<dataset>-<split>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The split `--split` names.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum SplitArg {
    Test,
    Val,
    Train,
}

impl From<SplitArg> for EvalSplit {
    fn from(s: SplitArg) -> EvalSplit {
        match s {
            SplitArg::Test => EvalSplit::Test,
            SplitArg::Val => EvalSplit::Val,
            SplitArg::Train => EvalSplit::Train,
        }
    }
}

/// `--model`: a stage's name, or else a checkpoint file.
pub fn model_choice(s: &str) -> Result<ModelChoice, std::convert::Infallible> {
    Ok(ModelChoice::parse(s))
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let which_split = EvalSplit::from(args.split);
    if which_split == EvalSplit::Val && args.dataset.is_some() {
        anyhow::bail!("--split val is the validation split a run holds out of its own training images; with --dataset use `test` or `train`");
    }
    let run = super::open_existing(&args.run_dir)?;
    let which = args.model.clone();
    let (name, split) = match &args.dataset {
        None => (run.cfg.data.dataset.to_string(), load_data(&run)?),
        Some(name) => {
            let parsed: DatasetName = name.parse()?;
            let split = load_other(&run, &parsed, args.data_path.as_deref())
                .map_err(|e| e.context(format!("cannot load --dataset {name}")))?;
            (parsed.to_string(), split)
        }
    };
    let images = split.split(which_split).ok_or_else(|| {
        anyhow::anyhow!(
            "--split val: the run {} holds out no validation split (its data.val_fraction and data.val_per_class are 0); use `test` or `train`",
            run.run.root.display()
        )
    })?;
    let net = eval::model(&run, &which)?;
    let e = eval::evaluate(
        &run,
        &net,
        images,
        (&which.name(), &name, which_split.as_str()),
    )?;
    let out = args.out.clone().unwrap_or_else(|| {
        run.run
            .root
            .join("eval")
            .join(format!("{}-{}-{}", e.model, e.dataset, e.split))
    });
    std::fs::create_dir_all(&out)
        .map_err(|err| anyhow::anyhow!("cannot create {}: {err}", out.display()))?;
    write(&out, &e)?;
    if e.non_finite > 0 {
        eprintln!(
            "warning: the model's logits are not finite (NaN or infinite) for {} of the {} images: they count as wrong, and the loss is NaN",
            e.non_finite, e.images
        );
    }
    outln!(
        "{} on {} {} ({} images): top-1 {:.2}%, top-5 {:.2}%, loss {:.4}\nconfusion matrix: {}, {}",
        e.model,
        e.dataset,
        e.split,
        e.images,
        100.0 * e.result.top1,
        100.0 * e.result.top5,
        e.result.loss,
        out.join("confusion.csv").display(),
        out.join("confusion.png").display()
    );
    Ok(())
}

fn write(out: &Path, e: &eval::Evaluation) -> anyhow::Result<()> {
    use incubator_core::checkpoint::write_atomic;
    write_atomic(
        &out.join("metrics.json"),
        serde_json::to_string_pretty(e)?.as_bytes(),
    )?;
    write_atomic(&out.join("confusion.csv"), e.confusion_csv().as_bytes())?;
    let (side, rgb) = e.confusion_rgb();
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, side as u32, side as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&rgb)?;
    }
    write_atomic(&out.join("confusion.png"), &bytes)?;
    Ok(())
}
