//! The training loop shared by every stage: epochs of shuffled batches, gradient accumulation,
//! clipping, AdamW on the trainable set, evaluation after each epoch, a resumable checkpoint
//! after each epoch, and events for the log.

use super::batch::{Batch, BatchMaker};
use super::loss::Loss;
use super::optimizer::AdamW;
use super::schedule::CosineSchedule;
use crate::checkpoint::{self, Checkpoint};
use crate::config::{RunConfig, StageRecipe};
use crate::data::{DataSplit, Dataset};
use crate::device::{Dev, Rows};
use crate::events::{Event, StageId};
use crate::model::{flops, HasParams, Mode, Network, VitConfig};
use crate::telemetry::EventLog;
use dfdx::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

/// The loss a stage trains on, given the network's logits for a batch.
pub type LossFn<'a> = dyn Fn(Rows<OwnedTape<f32, Dev>>, &Batch) -> Loss + 'a;

pub struct TrainJob<'a> {
    pub stage: StageId,
    pub cfg: &'a RunConfig,
    pub vit: &'a VitConfig,
    pub recipe: StageRecipe,
    pub data: &'a DataSplit,
    /// Modules before this one are frozen and run untraced.
    pub first_traced: usize,
    /// Parameter names the optimizer updates; everything else stays bit-identical.
    pub trainable: BTreeSet<String>,
    pub loss: &'a LossFn<'a>,
    /// Where the per-epoch resumable state goes; `None` trains without checkpoints.
    pub state_path: Option<PathBuf>,
    pub show_progress: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOutcome {
    pub top1: f64,
    pub test_loss: f64,
    pub wall_s: f64,
    pub train_gflop: f64,
    pub epochs: usize,
    pub final_train_loss: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{stage}: the loss became {value} at epoch {epoch}, step {step}. Training stopped; the checkpoint of the last finished epoch is kept, so the stage resumes from there. Lower optim.base_lr, keep optim.clip_grad on, or reduce drop_path")]
    NonFinite {
        stage: StageId,
        value: f32,
        epoch: usize,
        step: u64,
    },
    #[error("{stage}: the training split has {have} images, fewer than one batch of {need} (optim.batch_size x optim.accum_steps); lower optim.batch_size or use more data")]
    TooLittleData {
        stage: StageId,
        have: usize,
        need: usize,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{0}")]
    Other(String),
}

/// A stable 64-bit mix of the run seed, the stage and the epoch: each epoch's shuffling,
/// augmentation and drop-path depend only on these, so a resumed or separately run stage
/// repeats an uninterrupted one exactly.
fn epoch_seed(seed: u64, stage: StageId, epoch: usize) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed;
    for b in stage.slug().bytes().chain(epoch.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

pub fn batch_maker<'a>(dev: &'a Dev, cfg: &'a RunConfig, vit: &'a VitConfig) -> BatchMaker<'a> {
    let (mean, std) = crate::data::mean_std(&cfg.data.dataset);
    BatchMaker {
        dev,
        vit,
        augment: &cfg.augment,
        mean,
        std,
    }
}

pub fn train(
    job: TrainJob,
    net: &mut Network,
    dev: &Dev,
    log: &mut EventLog,
) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    let o = &job.cfg.optim;
    let per_step = o.batch_size * o.accum_steps;
    let train_set = &job.data.train;
    if train_set.len < per_step {
        return Err(TrainError::TooLittleData {
            stage: job.stage,
            have: train_set.len,
            need: per_step,
        });
    }
    let steps_per_epoch = (train_set.len / per_step) as u64;
    let schedule = CosineSchedule {
        peak_lr: o.base_lr * per_step as f64 / 512.0,
        min_lr: o.min_lr,
        warmup_lr: o.warmup_lr,
        warmup_steps: job.recipe.warmup_epochs as u64 * steps_per_epoch,
        total_steps: job.recipe.epochs as u64 * steps_per_epoch,
    };
    let mut opt = AdamW::new(job.trainable.clone(), o.betas, o.eps, o.weight_decay);
    let probe = batch_maker(dev, job.cfg, job.vit)
        .eval(train_set, &[0])
        .patches;
    let gflop_per_sample = flops::train_flops_per_sample(net, &probe, job.first_traced) / 1e9;

    // Resume from the last finished epoch, if this stage was interrupted.
    let mut start_epoch = 0;
    let mut prior_wall = 0.0;
    let mut gflop = 0.0;
    if let Some(path) = job.state_path.as_ref().filter(|p| p.exists()) {
        let ck = checkpoint::read(path, "")?;
        ck.load_into(net, "", dev)?;
        let optim: BTreeMap<String, Vec<f32>> = ck
            .tensors
            .iter()
            .filter_map(|(k, (_, d))| k.strip_prefix("optim.").map(|k| (k.to_string(), d.clone())))
            .collect();
        let meta = |k: &str| {
            ck.metadata
                .get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        start_epoch = meta("epoch") as usize;
        prior_wall = meta("wall_s");
        gflop = meta("train_gflop");
        opt.load_state(net, &optim, start_epoch as u64 * steps_per_epoch)
            .map_err(|e| {
                TrainError::Other(format!(
                    "{}: {e}; delete it to restart the stage",
                    path.display()
                ))
            })?;
        eprintln!(
            "[{}] resuming after epoch {start_epoch} from {}",
            job.stage,
            path.display()
        );
    }

    let params_total = net.num_params();
    let params_trainable: usize = net
        .named_params()
        .iter()
        .filter(|(n, _)| job.trainable.contains(n))
        .map(|(_, p)| p.numel())
        .sum();
    log.emit(Event::StageStarted {
        host: hostname(),
        pid: std::process::id(),
        epochs: job.recipe.epochs,
        steps_per_epoch: steps_per_epoch as usize,
        resumed_epochs: start_epoch,
        params_total,
        params_trainable,
    });

    let maker = batch_maker(dev, job.cfg, job.vit);
    let mut last = EvalResult {
        top1: 0.0,
        loss: 0.0,
    };
    let mut last_train_loss = f64::NAN;
    for epoch in start_epoch..job.recipe.epochs {
        let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed(job.cfg.seed, job.stage, epoch));
        let mut order: Vec<usize> = (0..train_set.len).collect();
        order.shuffle(&mut rng);
        let bar = progress_bar(&job, epoch, steps_per_epoch);
        let epoch_start = Instant::now();
        let mut loss_sum = 0.0;
        for s in 0..steps_per_epoch {
            let step = epoch as u64 * steps_per_epoch + s;
            let step_start = Instant::now();
            let lr = schedule.lr(step);
            let mut acc: Option<Gradients<f32, Dev>> = None;
            let mut step_loss = 0.0;
            for micro in 0..o.accum_steps {
                let at = (s as usize * o.accum_steps + micro) * o.batch_size;
                let batch = maker.train(train_set, &order[at..at + o.batch_size], &mut rng);
                let mut mode = Mode {
                    train: true,
                    rng: Some(&mut rng),
                };
                let logits = net.forward_traced_from(
                    batch.patches.clone(),
                    job.first_traced,
                    job.recipe.drop_path,
                    &mut mode,
                );
                let loss = (job.loss)(logits, &batch);
                let value = loss.array();
                if !value.is_finite() {
                    bar.abandon();
                    return Err(TrainError::NonFinite {
                        stage: job.stage,
                        value,
                        epoch,
                        step,
                    });
                }
                step_loss += value as f64 / o.accum_steps as f64;
                let mut grads = loss.backward();
                match acc.as_mut() {
                    None => acc = Some(grads),
                    Some(a) => opt.accumulate(net, a, &mut grads),
                }
            }
            let mut grads = acc.expect("accum_steps >= 1");
            if o.accum_steps > 1 {
                opt.scale_grads(net, &mut grads, 1.0 / o.accum_steps as f32);
            }
            let grad_norm = opt.grad_norm(net, &mut grads);
            if let Some(max) = o.clip_grad {
                if grad_norm > max {
                    opt.scale_grads(net, &mut grads, (max / (grad_norm + 1e-6)) as f32);
                }
            }
            opt.update(net, &mut grads, lr);
            drop(grads);
            gflop += gflop_per_sample * per_step as f64;
            loss_sum += step_loss;
            let samples_per_sec = per_step as f64 / step_start.elapsed().as_secs_f64();
            log.emit(Event::TrainStep {
                step: step + 1,
                epoch: epoch as f64 + (s + 1) as f64 / steps_per_epoch as f64,
                loss: step_loss,
                lr,
                grad_norm,
                samples_per_sec,
            });
            bar.set_message(format!("loss {step_loss:.3} lr {lr:.2e}"));
            bar.inc(1);
        }
        bar.finish_and_clear();
        last_train_loss = loss_sum / steps_per_epoch as f64;
        last = evaluate(net, &maker, &job.data.test, o.batch_size);
        let step = (epoch as u64 + 1) * steps_per_epoch;
        log.emit(Event::Eval {
            step,
            epoch: epoch + 1,
            top1: last.top1,
            loss: last.loss,
        });
        let epoch_s = epoch_start.elapsed().as_secs_f64();
        eprintln!(
            "[{}] epoch {}/{}  train loss {:.4}  test loss {:.4}  top-1 {:.2}%  {:.0} samples/s",
            job.stage,
            epoch + 1,
            job.recipe.epochs,
            last_train_loss,
            last.loss,
            100.0 * last.top1,
            (steps_per_epoch as usize * per_step) as f64 / epoch_s
        );
        if let Some(path) = &job.state_path {
            let mut tensors = checkpoint::params_of(net);
            tensors.retain(|name, _| job.trainable.contains(name));
            for (k, v) in opt.state(net) {
                let shape = vec![v.len()];
                tensors.insert(format!("optim.{k}"), (shape, v));
            }
            let wall = prior_wall + started.elapsed().as_secs_f64();
            let meta = BTreeMap::from([
                ("epoch".to_string(), (epoch + 1).to_string()),
                ("wall_s".to_string(), wall.to_string()),
                ("train_gflop".to_string(), gflop.to_string()),
            ]);
            checkpoint::save(path, &tensors, &meta).map_err(|e| {
                TrainError::Other(format!("cannot write checkpoint {}: {e}", path.display()))
            })?;
        }
    }
    if start_epoch >= job.recipe.epochs {
        last = evaluate(net, &maker, &job.data.test, o.batch_size);
    }
    Ok(TrainOutcome {
        top1: last.top1,
        test_loss: last.loss,
        wall_s: prior_wall + started.elapsed().as_secs_f64(),
        train_gflop: gflop,
        epochs: job.recipe.epochs,
        final_train_loss: last_train_loss,
    })
}

/// Loads a resumable state's trainable parameters without training (used to check resumes).
pub fn load_state(
    path: &std::path::Path,
    net: &mut Network,
    dev: &Dev,
) -> Result<Checkpoint, TrainError> {
    let ck = checkpoint::read(path, "")?;
    ck.load_into(net, "", dev)?;
    Ok(ck)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    pub top1: f64,
    pub loss: f64,
}

/// Top-1 accuracy and cross-entropy on a whole split, without augmentation or drop-path.
pub fn evaluate(
    net: &Network,
    maker: &BatchMaker,
    data: &Dataset,
    batch_size: usize,
) -> EvalResult {
    let (mut correct, mut loss_sum) = (0usize, 0.0f64);
    let indices: Vec<usize> = (0..data.len).collect();
    for chunk in indices.chunks(batch_size) {
        let batch = maker.eval(data, chunk);
        let logits = net.forward(batch.patches, 0.0, &mut Mode::eval());
        let classes = logits.shape().1;
        let values = logits.as_vec();
        for (k, &label) in batch.labels.iter().enumerate() {
            let row = &values[k * classes..(k + 1) * classes];
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
            loss_sum += (lse - row[label]) as f64;
            let argmax = row
                .iter()
                .enumerate()
                .fold(0, |best, (i, v)| if *v > row[best] { i } else { best });
            correct += (argmax == label) as usize;
        }
    }
    EvalResult {
        top1: correct as f64 / data.len.max(1) as f64,
        loss: loss_sum / data.len.max(1) as f64,
    }
}

fn progress_bar(job: &TrainJob, epoch: usize, steps: u64) -> ProgressBar {
    if !job.show_progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {msg} {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!(
        "{} ep {}/{}",
        job.stage,
        epoch + 1,
        job.recipe.epochs
    ));
    bar
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
