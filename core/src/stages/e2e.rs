//! The baseline: the same target model trained end to end from scratch with the same recipe.

use super::Engine;
use crate::checkpoint;
use crate::events::StageId;
use crate::model::Network;
use crate::run_dir::StageSummary;

pub fn run(engine: &Engine) -> anyhow::Result<StageSummary> {
    engine.stage(StageId::E2E, |log| {
        let mut rng = engine.init_rng("e2e");
        let dev = engine.dev();
        let mut net = Network::vit(
            &mut engine.init(&dev, &mut rng),
            &engine.vit,
            &engine.split.divided_depths,
        );
        let init = engine.run.init_path();
        let mut imported_from = None;
        if init.exists() {
            eprintln!("[e2e] starting from imported weights {}", init.display());
            let read =
                checkpoint::read(&init, "import it again: `incubator import FILE --as init`")?;
            imported_from = Some(
                read.metadata
                    .get(crate::run_dir::IMPORTED_FROM)
                    .cloned()
                    .unwrap_or_else(|| init.display().to_string()),
            );
            read.load_into(&mut net, "", &dev)?;
        }
        let recipe = engine.cfg.e2e.recipe();
        let mut outcome = engine.train_all(StageId::E2E, recipe, &mut net, log)?;
        outcome.imported_from = imported_from;
        checkpoint::save_params(&engine.run.model_path(StageId::E2E), &net)?;
        Ok(outcome)
    })
}
