//! Phase MT: train target module i inside the frozen meta model. Only module i's unit reaches
//! the optimizer; parts before it run untraced, parts after it pass gradients through but are
//! never updated. The incubation strategy decides what the unit and the hybrid are.

use super::{meta, Engine};
use crate::checkpoint;
use crate::events::StageId;
use crate::model::Network;
use crate::plugin::{HybridInputs, IncubationStrategy};
use crate::run_dir::StageSummary;
use crate::train::{self, batch::Batch};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub fn module_path(engine: &Engine, i: usize) -> PathBuf {
    engine
        .run
        .stage_dir(StageId::incubate(i))
        .join("module.safetensors")
}

fn strategy(engine: &Engine) -> anyhow::Result<Arc<dyn IncubationStrategy>> {
    engine
        .registry
        .strategy(&engine.cfg.plugins.strategy)
        .map_err(anyhow::Error::msg)
}

fn in_plugin<T>(s: &dyn IncubationStrategy, what: &str, r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| e.context(format!("incubation strategy {:?}: {what}", s.name())))
}

/// Module `i`'s unit, freshly initialised as the strategy does it.
pub fn init_unit(engine: &Engine, i: usize) -> anyhow::Result<Network> {
    let s = strategy(engine)?;
    let mut rng = engine.init_rng(&StageId::incubate(i).slug());
    let dev = engine.dev();
    let unit = s.init_unit(&engine.plugin_ctx(), i, &mut engine.init(&dev, &mut rng));
    in_plugin(&*s, &format!("init_unit({i})"), unit)
}

/// Module `i`'s trained unit.
pub fn load(engine: &Engine, i: usize) -> anyhow::Result<Network> {
    let mut unit = init_unit(engine, i)?;
    checkpoint::read(
        &module_path(engine, i),
        &format!("re-run `incubator incubate --module {i}`"),
    )?
    .load_into(&mut unit, "", &engine.dev())?;
    Ok(unit)
}

/// Modules that must finish before module `i` starts, by the configured strategy.
pub fn dependencies(engine: &Engine, i: usize) -> anyhow::Result<Vec<usize>> {
    let s = strategy(engine)?;
    let k = engine.split.k();
    let deps = s.depends_on(&engine.plugin_ctx(), i);
    if let Some(bad) = deps.iter().find(|&&j| j >= k || j == i) {
        anyhow::bail!(
            "incubation strategy {:?} says module {i} depends on module {bad}, which is {}",
            s.name(),
            if *bad == i { "itself" } else { "out of range" }
        );
    }
    Ok(deps)
}

/// Every module's dependencies, in module order.
pub fn all_dependencies(engine: &Engine) -> anyhow::Result<Vec<Vec<usize>>> {
    (0..engine.split.k())
        .map(|i| dependencies(engine, i))
        .collect()
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
        let s = strategy(engine)?;
        let deps = dependencies(engine, i)?;
        let mut finished = BTreeMap::new();
        for &j in &deps {
            if engine.run.summary(StageId::incubate(j))?.is_none() {
                anyhow::bail!(
                    "module {i} needs module {j} incubated first (strategy {:?} trains modules {deps:?} before it); run `incubator incubate --module {j} --run-dir {}`",
                    s.name(),
                    engine.run.root.display()
                );
            }
            finished.insert(j, load(engine, j)?);
        }
        let inputs = HybridInputs {
            module: i,
            meta: meta::load(engine)?,
            unit: init_unit(engine, i)?,
            finished,
            load_meta: &|| meta::load(engine),
        };
        let hybrid = s.hybrid(&engine.plugin_ctx(), inputs);
        let mut hybrid = in_plugin(&*s, &format!("hybrid({i})"), hybrid)?;
        let parts = hybrid.net.parts.len();
        let trained = hybrid.trained.clone();
        if trained.is_empty() || trained.end > parts {
            anyhow::bail!(
                "incubation strategy {:?} trains parts {trained:?} of a hybrid with {parts} parts",
                s.name()
            );
        }
        let trainable = hybrid.net.param_names_of(trained.clone()).into_iter().collect();
        let recipe = s.recipe(&engine.plugin_ctx(), i, engine.cfg.incubate);
        let loss_fn = &hybrid.loss;
        let loss = |logits, batch: &Batch| loss_fn(logits, batch);
        let job = engine.job(id, recipe, trained.start, trainable, &loss);
        let outcome = train::train(job, &mut hybrid.net, &engine.dev(), log)?;
        let unit = hybrid.net.split_off(trained);
        checkpoint::save_params(
            &module_path(engine, i),
            &unit,
        )?;
        Ok(outcome)
    })
}
