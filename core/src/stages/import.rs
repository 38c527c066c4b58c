//! `incubator import`: a timm ViT checkpoint as a stage's finished model of a run: its meta
//! model (the modules then incubate inside it) or its E2E model (a teacher for distilling
//! strategies, and the report's baseline); or as the weights the E2E baseline starts from
//! (`init`: a pretrained model fine-tuned end to end). The weights must fit the run's configured model;
//! the stage's summary records the imported model's accuracy on the run's test split, measured
//! here, with no training epochs and no compute.

use super::{eval, meta, timm, Engine, OpenRun};
use crate::checkpoint;
use crate::events::StageId;
use crate::run_dir::StageSummary;
use crate::train::batch::batch_maker;
use crate::train::evaluate::evaluate;
use crate::train::observe::Observers;
use crate::train::TrainOutcome;
use std::path::Path;

/// Imports `file` (a timm state dict, safetensors) as stage `id` (meta or e2e) of the run.
pub fn import_timm(engine: &Engine, file: &Path, id: StageId) -> anyhow::Result<StageSummary> {
    let (mut net, path) = match id {
        StageId::META => (meta::build(engine)?, engine.run.model_path(StageId::META)),
        StageId::E2E => (eval::plain_vit(engine), engine.run.model_path(StageId::E2E)),
        other => anyhow::bail!("--as {other}: a timm model can be imported as `meta` or `e2e`"),
    };
    if engine.run.summary(id)?.is_some() {
        anyhow::bail!(
            "the {id} stage of {} has finished already; import into a fresh run directory (nothing was changed)",
            engine.run.root.display()
        );
    }
    load_timm(engine, file, &mut net, &format!("{id}"))?;
    engine.stage(id, |_log| {
        checkpoint::save_params(&path, &net)?;
        let dev = engine.dev();
        let maker = batch_maker(&dev, &engine.cfg, &engine.vit);
        let eval = |images| {
            evaluate(
                &net,
                &maker,
                images,
                engine.cfg.optim.batch_size,
                &mut Observers::for_evaluation(),
            )
            .map_err(|e| anyhow::anyhow!("evaluating the imported model: {e}"))
        };
        let r = eval(engine.data.test())?;
        let val = engine.data.val().map(eval).transpose()?;
        Ok(TrainOutcome {
            top1: r.top1,
            top5: r.top5,
            best_top1: val.map_or(r.top1, |v| v.top1),
            best_epoch: 0,
            best_split: engine.data.per_epoch_split(),
            val,
            test_loss: r.loss,
            wall_s: 0.0,
            train_gflop: 0.0,
            epochs: 0,
            steps: 0,
            final_train_loss: f64::NAN,
            depends_on: Vec::new(),
            imported_from: Some(file.display().to_string()),
            teachers: Vec::new(),
            stacked: None,
        })
    })
}

/// The metadata key of an init checkpoint that names the file it was imported from.
pub use crate::run_dir::IMPORTED_FROM;

/// Imports `file` as the weights the E2E stage starts from; it trains when `incubator e2e`
/// (or `run`) runs. Refused once that stage has started or finished. Reads no data.
pub fn import_timm_init(engine: &OpenRun, file: &Path) -> anyhow::Result<()> {
    let id = StageId::E2E;
    if engine.run.summary(id)?.is_some() || engine.run.state_path(id).exists() {
        anyhow::bail!(
            "the e2e stage of {} has started or finished already; import into a fresh run directory (nothing was changed)",
            engine.run.root.display()
        );
    }
    let mut net = eval::plain_vit(engine);
    load_timm(engine, file, &mut net, "target")?;
    fs_err::create_dir_all(engine.run.stage_dir(id))?;
    let metadata = [(IMPORTED_FROM.to_string(), file.display().to_string())].into();
    checkpoint::save(
        &engine.run.init_path(),
        &checkpoint::params_of(&net),
        &metadata,
    )?;
    Ok(())
}

/// Reads `file` (a timm state dict) into `net`, naming the file and the model it does not fit.
fn load_timm(
    engine: &OpenRun,
    file: &Path,
    net: &mut crate::model::Network,
    model: &str,
) -> anyhow::Result<()> {
    let read = checkpoint::read_user(
        file,
        "give a timm VisionTransformer state dict saved as safetensors",
    )?;
    timm::load_into(read, net, &engine.vit, &engine.dev()).map_err(|e| {
        anyhow::anyhow!(
            "{} does not fit this run's {model} model: {e}",
            file.display()
        )
    })
}
