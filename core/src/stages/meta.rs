//! Phase PT: train the meta model (one layer per module by default) end to end.

use super::{Engine, OpenRun};
use crate::checkpoint;
use crate::events::StageId;
use crate::model::Network;
use crate::run_dir::StageSummary;
use std::collections::BTreeMap;

/// The meta model's skeleton from its design, with freshly drawn weights.
pub fn build(engine: &OpenRun) -> anyhow::Result<Network> {
    let design = engine
        .registry
        .meta_design(&engine.cfg.plugins.meta_design)?;
    let mut rng = engine.init_rng("meta");
    let dev = engine.dev();
    design
        .build(&engine.plugin_ctx(), &mut engine.init(&dev, &mut rng))
        .map_err(|e| {
            e.into_anyhow()
                .context(format!("meta design {:?}", design.name()))
        })
}

/// Whether the configured strategy uses a meta model at all.
fn used(engine: &OpenRun) -> anyhow::Result<bool> {
    let s = engine.registry.strategy(&engine.cfg.plugins.strategy)?;
    Ok(s.uses_meta(&engine.plugin_ctx()))
}

/// The trained meta model, as later stages use it (no parts when the strategy uses none).
pub fn load(engine: &OpenRun) -> anyhow::Result<Network> {
    if !used(engine)? {
        return Ok(Network { parts: Vec::new() });
    }
    if engine.run.summary(StageId::META)?.is_none() {
        anyhow::bail!(
            "the meta model has not been trained in {}: run `incubator meta --run-dir {}` first",
            engine.run.root.display(),
            engine.run.root.display()
        );
    }
    let mut net = build(engine)?;
    checkpoint::read(
        &engine.run.model_path(StageId::META),
        "re-run `incubator meta`",
    )?
    .load_into(&mut net, "", &engine.dev())?;
    Ok(net)
}

pub fn run(engine: &Engine) -> anyhow::Result<StageSummary> {
    engine.stage(StageId::META, |log| {
        if !used(engine)? {
            eprintln!(
                "[meta] strategy {:?} uses no meta model: nothing to train",
                engine.cfg.plugins.strategy
            );
            return Ok(crate::train::TrainOutcome {
                top1: 0.0,
                top5: 0.0,
                best_top1: 0.0,
                best_epoch: 0,
                best_split: Default::default(),
                val: None,
                test_loss: 0.0,
                wall_s: 0.0,
                train_gflop: 0.0,
                epochs: 0,
                steps: 0,
                final_train_loss: 0.0,
                depends_on: Vec::new(),
                imported_from: None,
                teachers: Vec::new(),
                stacked: None,
            });
        }
        let mut net = build(engine)?;
        let outcome = engine.train_all(StageId::META, engine.cfg.meta, &mut net, log)?;
        let meta = BTreeMap::from([("depths".to_string(), format!("{:?}", net.depths()))]);
        checkpoint::save(
            &engine.run.model_path(StageId::META),
            &checkpoint::params_of(&net),
            &meta,
        )?;
        Ok(outcome)
    })
}
