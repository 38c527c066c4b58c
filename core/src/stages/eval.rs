//! `incubator eval`: a finished model of a run, or a checkpoint file of the run's model shape,
//! on a split of a dataset: top-1, top-5, loss and the confusion matrix. The evaluation is the
//! one training reports (no augmentation, no drop-path), so a stage's own split gives the top-1
//! of its summary.

use super::{assemble, meta, OpenRun};
use crate::checkpoint;
use crate::data::Images;
use crate::events::StageId;
use crate::model::Network;
use crate::train::batch::batch_maker;
use crate::train::evaluate::{evaluate_each, EvalResult};
use crate::train::observe::Observers;
use serde::Serialize;
use std::path::PathBuf;

/// Which model: a stage's (`meta`, `assemble`, `e2e`) or a safetensors file.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelChoice {
    Stage(StageId),
    File(PathBuf),
}

impl ModelChoice {
    pub fn parse(s: &str) -> ModelChoice {
        match s {
            "meta" => ModelChoice::Stage(StageId::META),
            "assemble" => ModelChoice::Stage(StageId::ASSEMBLE),
            "e2e" => ModelChoice::Stage(StageId::E2E),
            path => ModelChoice::File(path.into()),
        }
    }

    pub fn name(&self) -> String {
        match self {
            ModelChoice::Stage(id) => id.slug(),
            ModelChoice::File(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
        }
    }
}

/// The model `which` names, its weights loaded.
pub fn model(run: &OpenRun, which: &ModelChoice) -> anyhow::Result<Network> {
    let finished = |id: StageId| -> anyhow::Result<()> {
        if run.run.summary(id)?.is_none() {
            anyhow::bail!(
                "the {id} stage of {} has not finished: there is no {id} model to evaluate; run `incubator {} --run-dir {}` first",
                run.run.root.display(),
                id.stage.as_str(),
                run.run.root.display()
            );
        }
        Ok(())
    };
    let plain_vit = || plain_vit(run);
    let (mut net, path, fix) = match which {
        ModelChoice::Stage(id) if *id == StageId::META => {
            finished(*id)?;
            return meta::load(run);
        }
        ModelChoice::Stage(id) if *id == StageId::ASSEMBLE => {
            finished(*id)?;
            // the assembly rule's structure (glue included), then the fine-tuned weights
            let net = assemble::assemble(run)?;
            (
                net,
                run.run.model_path(StageId::ASSEMBLE),
                "re-run `incubator assemble`",
            )
        }
        ModelChoice::Stage(id) => {
            finished(*id)?;
            (
                plain_vit(),
                run.run.model_path(StageId::E2E),
                "re-run `incubator e2e`",
            )
        }
        ModelChoice::File(path) if !path.is_file() => anyhow::bail!(
            "model {:?} is neither a stage (meta, assemble, e2e) nor a checkpoint file",
            path.display().to_string()
        ),
        ModelChoice::File(path) => (
            plain_vit(),
            path.clone(),
            "give a checkpoint of this run's model (a plain ViT of its split)",
        ),
    };
    let read = match which {
        ModelChoice::File(_) => checkpoint::read_user(&path, fix)?,
        ModelChoice::Stage(_) => checkpoint::read(&path, fix)?,
    };
    read.load_into(&mut net, "", &run.dev())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(net)
}

/// The run's target ViT with any weights (they are loaded over).
pub fn plain_vit(run: &OpenRun) -> Network {
    let (dev, mut rng) = (run.dev(), run.init_rng("eval"));
    Network::vit(
        &mut run.init(&dev, &mut rng),
        &run.vit,
        &run.split.divided_depths,
    )
}

/// One model on one split.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub model: String,
    pub dataset: String,
    pub split: String,
    pub images: usize,
    /// Images whose logits were not all finite (a diverged model): counted wrong, left out
    /// of the confusion matrix.
    pub non_finite: usize,
    #[serde(flatten)]
    pub result: EvalResult,
    /// `confusion[label][predicted]`: how many images of each class went to each class.
    pub confusion: Vec<Vec<u64>>,
}

/// Evaluates `net` on `data`, which must have the images and classes the run's model is for.
pub fn evaluate(
    run: &OpenRun,
    net: &Network,
    data: Images,
    (model, dataset, split): (&str, &str, &str),
) -> anyhow::Result<Evaluation> {
    let want = run.shape;
    let got = data.shape(run.vit.image_size);
    if got != want {
        anyhow::bail!(
            "the model is for {want} ({}); {dataset} has {got}",
            run.cfg.data.dataset
        );
    }
    let dev = run.dev();
    let maker = batch_maker(&dev, &run.cfg, &run.vit);
    let k = data.num_classes();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut non_finite = 0usize;
    let result = evaluate_each(
        net,
        &maker,
        data,
        run.cfg.optim.batch_size,
        &mut Observers::for_evaluation(),
        |label, pred| match pred {
            Some(pred) => confusion[label][pred] += 1,
            None => non_finite += 1,
        },
    )
    .map_err(|e| anyhow::anyhow!("evaluating on {dataset} {split}: {e}"))?;
    Ok(Evaluation {
        model: model.into(),
        dataset: dataset.into(),
        split: split.into(),
        images: confusion.iter().flatten().sum::<u64>() as usize + non_finite,
        non_finite,
        result,
        confusion,
    })
}

impl Evaluation {
    /// `label,predicted_0,...` rows: counts, one row per true class.
    pub fn confusion_csv(&self) -> String {
        let k = self.confusion.len();
        let mut out = String::from("label");
        for j in 0..k {
            out.push_str(&format!(",predicted_{j}"));
        }
        out.push('\n');
        for (i, row) in self.confusion.iter().enumerate() {
            out.push_str(&i.to_string());
            for c in row {
                out.push_str(&format!(",{c}"));
            }
            out.push('\n');
        }
        out
    }

    /// The confusion matrix as an RGB image: a square per (label row, predicted column),
    /// white at 0 to dark blue at the whole row (each row normalised by its class's images).
    pub fn confusion_rgb(&self) -> (usize, Vec<u8>) {
        let k = self.confusion.len().max(1);
        let cell = (512 / k).clamp(4, 48);
        let side = k * cell;
        let mut rgb = vec![255u8; side * side * 3];
        for (i, row) in self.confusion.iter().enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            for (j, &c) in row.iter().enumerate() {
                let f = c as f64 / total;
                let px = [
                    (255.0 * (1.0 - 0.9 * f)) as u8,
                    (255.0 * (1.0 - 0.75 * f)) as u8,
                    (255.0 * (1.0 - 0.35 * f)) as u8,
                ];
                for y in i * cell..(i + 1) * cell {
                    for x in j * cell..(j + 1) * cell {
                        let o = (y * side + x) * 3;
                        rgb[o..o + 3].copy_from_slice(&px);
                    }
                }
            }
        }
        (side, rgb)
    }
}
