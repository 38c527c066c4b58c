//! Finished models as teachers: the E2E baseline or the assembled model of this run or of
//! another run directory, loaded as a frozen network with one part per module (so a strategy
//! can address teacher module i, as m2mKD does).

use super::Engine;
use crate::checkpoint;
use crate::events::{StageId, TeacherCost};
use crate::model::Network;
use crate::run_dir::{OpenMode, RunDir};
use crate::split::Split;

pub use super::teacher_spec::TeacherSpec;

/// The run directory `spec` names a model of (relative paths from `run`'s directory).
fn run_of(run: &RunDir, parsed: &TeacherSpec) -> RunDir {
    let root = match &parsed.run {
        None => run.root.clone(),
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => run.root.join(dir),
    };
    RunDir::at(&root)
}

/// What training the model `spec` names cost, from its run's stage summaries: an E2E model's
/// training, or an assembled model's whole method (its meta model, incubations, their
/// teachers and fine-tune). `None` (trained elsewhere) when imported weights are in it.
pub fn cost(run: &RunDir, spec: &str) -> anyhow::Result<TeacherCost> {
    let parsed = TeacherSpec::parse(spec)?;
    let other = run_of(run, &parsed);
    let finished = |id: StageId| -> anyhow::Result<crate::run_dir::StageSummary> {
        other.summary(id)?.ok_or_else(|| {
            anyhow::anyhow!(
                "teacher {spec:?}: the {id} stage of {} has not finished",
                other.root.display()
            )
        })
    };
    let known = |s: &crate::run_dir::StageSummary| s.outcome.imported_from.is_none();
    let spent = if parsed.stage == StageId::E2E {
        let e2e = finished(StageId::E2E)?;
        known(&e2e).then_some((e2e.outcome.train_gflop, e2e.outcome.wall_s))
    } else {
        finished(StageId::ASSEMBLE)?;
        let stages = super::report::FinishedStages::read(&other)?
            .expect("the assembly has finished (checked above)");
        let all_known = stages
            .meta
            .iter()
            .chain(&stages.incubations)
            .chain([&stages.assemble])
            .all(known);
        let c = stages.comparison();
        (all_known && c.teachers_elsewhere.is_empty()).then_some((c.method_gflop, c.method_wall_s))
    };
    Ok(TeacherCost {
        spec: spec.to_string(),
        gflop: spent.map(|s| s.0),
        wall_s: spent.map(|s| s.1),
    })
}

/// The model `spec` names, frozen weights loaded, one part per module of its run's split.
pub fn load(engine: &Engine, spec: &str) -> anyhow::Result<Network> {
    let parsed = TeacherSpec::parse(spec)?;
    let Some(dir) = &parsed.run else {
        if parsed.stage == StageId::ASSEMBLE {
            anyhow::bail!("teacher \"assemble\" of this run: the assembled model is made after the incubations, so it cannot teach them; name another run's (\"RUN_DIR:assemble\")");
        }
        return load_from(
            engine,
            &engine.run,
            &engine.vit,
            &engine.split,
            parsed.stage,
            spec,
        );
    };
    let root = if dir.is_absolute() {
        dir.clone()
    } else {
        engine.run.root.join(dir)
    };
    if !root.join("config.toml").is_file() {
        anyhow::bail!(
            "teacher {spec:?}: {} is not a run directory (no config.toml); paths are relative to this run's directory {}",
            root.display(),
            engine.run.root.display()
        );
    }
    let (other, cfg) = RunDir::open(&root, None, OpenMode::Existing)?;
    let t = engine.shape;
    let vit = cfg.vit(t.height, t.channels, t.num_classes).map_err(|e| {
        anyhow::anyhow!("teacher {spec:?}: its configuration does not fit this run's data: {e}")
    })?;
    let split = Split::resolve(&cfg, &vit)?;
    load_from(engine, &other, &vit, &split, parsed.stage, spec)
}

/// A ViT skeleton of `vit` and `split` with the weights of `run`'s `stage` model.
fn load_from(
    engine: &Engine,
    run: &RunDir,
    vit: &crate::model::VitConfig,
    split: &Split,
    stage: StageId,
    spec: &str,
) -> anyhow::Result<Network> {
    // The weights are overwritten from the file, so any seed does.
    let (dev, mut rng) = (engine.dev(), engine.init_rng("teacher"));
    let mut net = Network::vit(&mut engine.init(&dev, &mut rng), vit, &split.divided_depths);
    if run.summary(stage)?.is_none() {
        anyhow::bail!(
            "teacher {spec:?}: the {stage} stage of {} has not finished; run `incubator {} --run-dir {}` first",
            run.root.display(),
            stage.stage.as_str(),
            run.root.display()
        );
    }
    // Both stages save their final model under this name (`RunDir::model_path`).
    let path = run.model_path(stage);
    checkpoint::read(&path, &format!("re-run `incubator {}`", stage.stage.as_str()))?
        .load_into(&mut net, "", &dev)
        .map_err(|e| {
            anyhow::anyhow!("teacher {spec:?}: {e} (a teacher must be a plain ViT of its run's split: the E2E model, or a model assembled without glue)")
        })?;
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::StageSummary;
    use crate::train::TrainOutcome;

    fn finished(
        run: &RunDir,
        stage: StageId,
        gflop: f64,
        imported: bool,
        teachers: Vec<TeacherCost>,
    ) {
        let outcome = TrainOutcome {
            top1: 0.5,
            top5: 0.9,
            best_top1: 0.5,
            best_epoch: 1,
            best_split: Default::default(),
            val: None,
            test_loss: 1.0,
            wall_s: gflop / 10.0,
            train_gflop: gflop,
            epochs: if imported { 0 } else { 1 },
            steps: 0,
            final_train_loss: 1.0,
            depends_on: Vec::new(),
            imported_from: imported.then(|| "model.safetensors".into()),
            teachers,
            stacked: None,
        };
        std::fs::create_dir_all(run.stage_dir(stage)).unwrap();
        run.write_summary(&StageSummary {
            stage,
            outcome,
            host: "h".into(),
            finished_at: 0.0,
            config_sha256: None,
            config_toml: None,
        })
        .unwrap();
    }

    #[test]
    fn a_teachers_cost_is_its_training_or_its_runs_whole_method_and_unknown_when_imported() {
        let tmp = tempfile::tempdir().unwrap();
        let here = RunDir::at(&tmp.path().join("here"));
        finished(&here, StageId::E2E, 40.0, false, vec![]);
        let c = cost(&here, "e2e").unwrap();
        assert_eq!((c.gflop, c.wall_s), (Some(40.0), Some(4.0)));
        // another run's assembled model: its meta model, incubations (and their own teacher)
        // and fine-tune
        let other = RunDir::at(&tmp.path().join("other"));
        finished(&other, StageId::META, 10.0, false, vec![]);
        let its_teacher = TeacherCost {
            spec: "e2e".into(),
            gflop: Some(7.0),
            wall_s: Some(0.7),
        };
        for i in 0..2 {
            finished(
                &other,
                StageId::incubate(i),
                20.0,
                false,
                vec![its_teacher.clone()],
            );
        }
        finished(&other, StageId::ASSEMBLE, 5.0, false, vec![]);
        let c = cost(&here, "../other:assemble").unwrap();
        assert_eq!(c.gflop, Some(10.0 + 40.0 + 5.0 + 7.0));
        // imported: trained elsewhere, cost unknown
        let imported = RunDir::at(&tmp.path().join("imported"));
        finished(&imported, StageId::E2E, 0.0, true, vec![]);
        let c = cost(&here, "../imported").unwrap();
        assert_eq!((c.spec.as_str(), c.gflop), ("../imported", None));
        // an unfinished teacher is an error naming it
        let e = cost(&here, "../nowhere:e2e").unwrap_err().to_string();
        assert!(e.contains("has not finished"), "{e}");
    }
}
