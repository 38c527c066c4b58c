//! Phase MT: train target module i inside the frozen meta model. Only module i's parameters
//! reach the optimizer; modules before it run untraced, modules after it pass gradients
//! through but are never updated.

use super::{meta, Engine};
use crate::checkpoint;
use crate::events::StageId;
use crate::model::Module;
use crate::run_dir::StageSummary;
use crate::train::{self, batch::Batch};
use std::path::PathBuf;

pub fn module_path(engine: &Engine, i: usize) -> PathBuf {
    engine
        .run
        .stage_dir(StageId::incubate(i))
        .join("module.safetensors")
}

/// Target module `i`'s skeleton, as the strategy initialises it.
pub fn init_target(engine: &Engine, i: usize) -> anyhow::Result<Module> {
    let strategy = engine
        .registry
        .strategy(&engine.cfg.plugins.strategy)
        .map_err(anyhow::Error::msg)?;
    let mut rng = engine.init_rng(&StageId::incubate(i).slug());
    Ok(strategy.init_target(&engine.plugin_ctx(), i, &mut engine.init(&mut rng))?)
}

/// The trained target module `i`.
pub fn load(engine: &Engine, i: usize) -> anyhow::Result<Module> {
    let mut module = init_target(engine, i)?;
    checkpoint::read(
        &module_path(engine, i),
        &format!("re-run `incubator incubate --module {i}`"),
    )?
    .load_into(&mut module, "", &engine.dev)?;
    Ok(module)
}

pub fn run(engine: &Engine, i: usize) -> anyhow::Result<StageSummary> {
    let k = engine.split.k();
    if i >= k {
        anyhow::bail!(
            "--module {i} is out of range: the split has {k} modules (0..={})",
            k - 1
        );
    }
    let id = StageId::incubate(i);
    engine.stage(id, |log| {
        let strategy = engine
            .registry
            .strategy(&engine.cfg.plugins.strategy)
            .map_err(anyhow::Error::msg)?;
        let meta = meta::load(engine)?;
        let target = init_target(engine, i)?;
        let mut hybrid = strategy.hybrid(&engine.plugin_ctx(), meta, target, i)?;
        let trainable = hybrid
            .net
            .module_param_names(hybrid.target)
            .into_iter()
            .collect();
        let loss = |logits, batch: &Batch| strategy.loss(logits, batch);
        let job = engine.job(id, engine.cfg.incubate, hybrid.target, trainable, &loss);
        let outcome = train::train(job, &mut hybrid.net, &engine.dev, log)?;
        let module = &hybrid.net.modules[hybrid.target];
        checkpoint::save(
            &module_path(engine, i),
            &checkpoint::params_of(module),
            &Default::default(),
        )?;
        Ok(outcome)
    })
}
