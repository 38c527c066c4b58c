//! The baseline: the same target model trained end to end from scratch with the same recipe.

use super::{Engine, OpenRun};
use crate::checkpoint;
use crate::events::StageId;
use crate::model::Network;
use crate::run_dir::StageSummary;
use std::path::PathBuf;

pub fn model_path(engine: &OpenRun) -> PathBuf {
    engine.run.stage_dir(StageId::E2E).join("model.safetensors")
}

/// Weights the baseline starts from instead of a random initialisation (`incubator import
/// --as init`: a pretrained model fine-tuned end to end).
pub fn init_path(engine: &OpenRun) -> PathBuf {
    engine.run.stage_dir(StageId::E2E).join("init.safetensors")
}

pub fn run(engine: &Engine) -> anyhow::Result<StageSummary> {
    engine.stage(StageId::E2E, |log| {
        let mut rng = engine.init_rng("e2e");
        let dev = engine.dev();
        let mut net = Network::vit(
            &mut engine.init(&dev, &mut rng),
            &engine.vit,
            &engine.split.divided_depths,
        );
        let init = init_path(engine);
        let mut imported_from = None;
        if init.exists() {
            eprintln!("[e2e] starting from imported weights {}", init.display());
            let read =
                checkpoint::read(&init, "import it again: `incubator import FILE --as init`")?;
            imported_from = Some(
                read.metadata
                    .get(super::import::IMPORTED_FROM)
                    .cloned()
                    .unwrap_or_else(|| init.display().to_string()),
            );
            read.load_into(&mut net, "", &dev)?;
        }
        let recipe = engine.cfg.e2e.recipe();
        let mut outcome = engine.train_all(StageId::E2E, recipe, &mut net, log)?;
        outcome.imported_from = imported_from;
        checkpoint::save_params(&model_path(engine), &net)?;
        Ok(outcome)
    })
}
