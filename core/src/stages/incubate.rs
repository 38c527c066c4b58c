//! Phase MT: train target module i inside the frozen meta model. Only module i's unit reaches
//! the optimizer; parts before it run untraced, parts after it pass gradients through but are
//! never updated. The incubation strategy decides what the unit and the hybrid are.

use super::{meta, teacher, Engine, OpenRun};
use crate::checkpoint;
use crate::events::StageId;
use crate::model::Network;
use crate::model::{Extras, Role};
use crate::plugin::{HybridInputs, IncubationStrategy, PartSettingsFn, PluginError, Tap, Target};
use crate::run_dir::StageSummary;
use crate::train;
use crate::train::job::SettingsError;
use crate::train::loss::Progress;
use crate::train::optimizer::Settings;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

fn strategy(engine: &OpenRun) -> anyhow::Result<Arc<dyn IncubationStrategy>> {
    engine
        .registry
        .strategy(&engine.cfg.plugins.strategy)
        .map_err(anyhow::Error::from)
}

fn in_plugin<T>(
    s: &dyn IncubationStrategy,
    what: &str,
    r: Result<T, PluginError>,
) -> anyhow::Result<T> {
    r.map_err(|e| {
        e.into_anyhow()
            .context(format!("incubation strategy {:?}: {what}", s.name()))
    })
}

/// Module `i`'s unit, freshly initialised as the strategy does it.
pub fn init_unit(engine: &OpenRun, i: usize) -> anyhow::Result<Network> {
    let s = strategy(engine)?;
    let mut rng = engine.init_rng(&StageId::incubate(i).slug());
    let dev = engine.dev();
    let unit = s.init_unit(&engine.plugin_ctx(), i, &mut engine.init(&dev, &mut rng));
    in_plugin(&*s, &format!("init_unit({i})"), unit)
}

/// Module `i`'s trained unit.
pub fn load(engine: &OpenRun, i: usize) -> anyhow::Result<Network> {
    let mut unit = init_unit(engine, i)?;
    checkpoint::read(
        &engine.run.module_path(i),
        &format!("re-run `incubator incubate --module {i}`"),
    )?
    .load_into(&mut unit, "", &engine.dev())?;
    Ok(unit)
}

/// The hybrid's per-part settings as the optimizer takes them: by parameter name.
fn part_settings_by_name<'h>(
    net: &Network,
    extras: &Extras,
    settings: &'h Option<Box<PartSettingsFn>>,
    trained: &Range<usize>,
) -> impl Fn(&Progress) -> Result<Settings, SettingsError> + 'h {
    let part_names: Vec<Vec<String>> = (0..net.parts.len())
        .map(|p| net.param_names_of(p..p + 1))
        .collect();
    let extra_names: BTreeMap<String, Vec<String>> = extras
        .names()
        .into_iter()
        .filter(|n| extras.role(n) == Some(Role::Trained))
        .map(|n| (n.to_string(), extras.param_names(n)))
        .collect();
    let trained = trained.clone();
    move |p: &Progress| {
        let Some(f) = settings else {
            return Ok(Settings::new());
        };
        let mut out = Settings::new();
        for (target, s) in f(p) {
            let names = match &target {
                Target::Parts(r)
                    if !r.is_empty() && r.start >= trained.start && r.end <= trained.end =>
                {
                    r.clone()
                        .flat_map(|q| part_names[q].iter().cloned())
                        .collect()
                }
                Target::Parts(r) => {
                    return Err(SettingsError::PartsOutside {
                        parts: r.clone(),
                        trained: trained.clone(),
                    })
                }
                Target::Extra(n) => {
                    extra_names
                        .get(n)
                        .cloned()
                        .ok_or_else(|| SettingsError::UnknownExtra {
                            name: n.clone(),
                            trained: extra_names.keys().cloned().collect(),
                        })?
                }
            };
            for name in names {
                out.insert(name, s);
            }
        }
        Ok(out)
    }
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
        // the modules the strategy trains first (finished: the stage checked its needs)
        let mut finished = BTreeMap::new();
        for j in engine.plan.needs(id).iter().filter_map(|n| n.module) {
            finished.insert(j, load(engine, j)?);
        }
        let (dev, mut rng) = (
            engine.dev(),
            engine.init_rng(&format!("{}-extras", id.slug())),
        );
        // every teacher the strategy declares or loads is part of the method's cost
        let declared = in_plugin(&*s, "teachers()", s.teachers(&engine.plugin_ctx()))?;
        let loaded = std::cell::RefCell::new(declared);
        let inputs = HybridInputs {
            module: i,
            meta: meta::load(engine)?,
            unit: init_unit(engine, i)?,
            finished,
            load_meta: &|| meta::load(engine).map_err(PluginError::engine),
            load_teacher: &|spec| {
                loaded.borrow_mut().push(spec.to_string());
                teacher::load(engine, spec).map_err(PluginError::engine)
            },
            init: engine.init(&dev, &mut rng),
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
        let taps: Vec<usize> = hybrid.taps.iter().map(|t| t.position()).collect();
        let out_of_range = |t: &&Tap| matches!(t, Tap::Input(p) | Tap::Output(p) if *p >= parts);
        if let Some(bad) = hybrid.taps.iter().find(out_of_range) {
            anyhow::bail!(
                "incubation strategy {:?} taps {bad:?} of a hybrid with {parts} parts",
                s.name()
            );
        }
        let mut trainable: std::collections::BTreeSet<String> = hybrid
            .net
            .param_names_of(trained.clone())
            .into_iter()
            .collect();
        trainable.extend(hybrid.extras.trained_param_names());
        let recipe = s.recipe(&engine.plugin_ctx(), i, engine.cfg.incubate);
        let resolve =
            part_settings_by_name(&hybrid.net, &hybrid.extras, &hybrid.part_settings, &trained);
        // Refused before the first step rather than at it.
        resolve(&Progress {
            epoch: 0,
            step_in_epoch: 0,
            steps_per_epoch: 1,
            epochs: recipe.epochs,
            total_steps: recipe.total_steps(1),
        })
        .map_err(|e| anyhow::anyhow!("incubation strategy {:?}: part settings: {e}", s.name()))?;
        let mut job = engine.job(id, recipe, trained.start, trainable, &*hybrid.loss);
        job.taps = taps;
        if hybrid.part_settings.is_some() {
            job.settings = Some(&resolve);
        }
        let mut outcome = train::train(
            job,
            &mut hybrid.net,
            &mut hybrid.extras,
            &engine.dev(),
            &mut engine.observers(id, log),
        )?;
        let mut specs = loaded.into_inner();
        specs.sort();
        specs.dedup();
        outcome.teachers = specs
            .iter()
            .map(|spec| teacher::cost(&engine.run, spec))
            .collect::<anyhow::Result<_>>()?;
        let unit = hybrid.net.split_off(trained);
        checkpoint::save_params(&engine.run.module_path(i), &unit)?;
        let kept = hybrid.extras.trained_param_names();
        if !kept.is_empty() {
            let mut tensors = checkpoint::params_of(&hybrid.extras);
            tensors.retain(|name, _| kept.contains(name));
            checkpoint::save(&engine.run.extras_path(i), &tensors, &BTreeMap::new())?;
        }
        Ok(outcome)
    })
}
