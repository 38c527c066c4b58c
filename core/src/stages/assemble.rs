//! Phase FT: stack the K incubated modules into the target model, then fine-tune it end to end.

use super::{incubate, meta, Engine, OpenRun};
use crate::checkpoint;
use crate::events::{EvalSplit, Event, StageId};
use crate::model::Network;
use crate::run_dir::StageSummary;
use crate::train::batch::batch_maker;
use crate::train::observe::Observers;
use crate::train::trainer::StackedEval;
use crate::train::{evaluate, EvalResult};

/// Stacks the incubated modules with the configured assembly rule. Refuses partial results:
/// every module must have finished incubation.
pub fn assemble(engine: &OpenRun) -> anyhow::Result<Network> {
    let k = engine.split.k();
    let mut missing = Vec::new();
    for i in 0..k {
        if engine.run.summary(StageId::incubate(i))?.is_none() {
            missing.push(i);
        }
    }
    if !missing.is_empty() {
        let cmds: Vec<String> = missing
            .iter()
            .map(|i| format!("`incubator incubate --module {i}`"))
            .collect();
        anyhow::bail!(
            "cannot assemble: module(s) {missing:?} of {k} have not finished incubation in {}; run {}",
            engine.run.root.display(),
            cmds.join(", ")
        );
    }
    let units = (0..k)
        .map(|i| incubate::load(engine, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rule = engine.registry.assembly(&engine.cfg.plugins.assembly)?;
    let net = rule
        .assemble(&engine.plugin_ctx(), units, meta::load(engine)?)
        .map_err(|e| {
            e.into_anyhow()
                .context(format!("assembly rule {:?}", rule.name()))
        })?;
    // Glue such as stitches has no blocks; the blocks must be the split's.
    let depths: Vec<usize> = net.depths().into_iter().filter(|&d| d > 0).collect();
    if depths != engine.split.divided_depths {
        anyhow::bail!(
            "assembly rule {:?} built a model with blocks {depths:?}, the split asks for {:?}",
            rule.name(),
            engine.split.divided_depths
        );
    }
    Ok(net)
}

pub fn run(engine: &Engine) -> anyhow::Result<StageSummary> {
    engine.stage(StageId::ASSEMBLE, |log| {
        let mut net = assemble(engine)?;
        checkpoint::save_params(&engine.run.assembled_path(), &net)?;
        let stacked = evaluate_stacked(engine, &net, log)?;
        let mut outcome =
            engine.train_all(StageId::ASSEMBLE, engine.cfg.finetune, &mut net, log)?;
        outcome.stacked = Some(stacked);
        checkpoint::save_params(&engine.run.model_path(StageId::ASSEMBLE), &net)?;
        Ok(outcome)
    })
}

/// The stacked modules before any fine-tuning, as DGL and InfoPro report their networks:
/// evaluated once (a resumed stage reads `stacked.json` back) and logged as epoch 0.
fn evaluate_stacked(
    engine: &Engine,
    net: &Network,
    log: &mut crate::telemetry::EventLog,
) -> anyhow::Result<StackedEval> {
    let path = engine.run.stacked_path();
    if path.exists() {
        let bytes = fs_err::read(&path)?;
        return serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not the stacked model's evaluation ({e}); delete it to evaluate again",
                path.display()
            )
        });
    }
    let dev = engine.dev();
    let maker = batch_maker(&dev, &engine.cfg, &engine.vit);
    let mut eval = |split: EvalSplit, images| -> anyhow::Result<EvalResult> {
        let r = evaluate(
            net,
            &maker,
            images,
            engine.cfg.optim.batch_size,
            &mut Observers::for_evaluation(),
        )
        .map_err(|e| anyhow::anyhow!("evaluating the stacked model: {e}"))?;
        log.emit(Event::Eval {
            step: 0,
            epoch: 0,
            split,
            top1: r.top1,
            top5: r.top5,
            loss: r.loss,
        });
        Ok(r)
    };
    let val = match engine.data.val() {
        Some(images) => Some(eval(EvalSplit::Val, images)?),
        None => None,
    };
    let stacked = StackedEval {
        test: eval(EvalSplit::Test, engine.data.test())?,
        val,
    };
    eprintln!(
        "[assemble] stacked modules before fine-tuning: test top-1 {:.2}%",
        100.0 * stacked.test.top1
    );
    checkpoint::write_atomic(&path, serde_json::to_string_pretty(&stacked)?.as_bytes())?;
    Ok(stacked)
}
