//! The training loop shared by every stage: epochs of shuffled batches, gradient accumulation,
//! clipping, AdamW on the trainable set, evaluation after each epoch, a resumable checkpoint
//! after each epoch, and events for the log.

use super::batch::{batch_maker, BatchMaker};
use super::evaluate::{evaluate, EvalError, EvalResult};
use super::feed::{epoch_order, Feed};
use super::loss::{LossInputs, LossTerms, Progress};
use super::optimizer::AdamW;
pub use super::outcome::{StackedEval, TrainError, TrainOutcome};
use super::schedule::CosineSchedule;
use super::state::{self, BestEval, TrainState};
use crate::config::{RunConfig, StageRecipe};
use crate::data::Data;
use crate::device::Dev;
use crate::events::{EvalSplit, Event, StageId};
use crate::model::{flops, Extras, HasParams, Mode, Network, VitConfig, WithExtras};
use crate::telemetry::host;
use crate::telemetry::EventLog;
use dfdx::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// The loss a stage trains on: named terms from the logits, the tapped activations, the
/// batch and the extra networks.
pub type LossFn<'a> = dyn Fn(LossInputs) -> LossTerms + 'a;

/// The optimizer settings of the trainable parameters at a position (per-part learning-rate
/// scales, weight decay, freezing), by parameter name.
pub type SettingsFn<'a> = dyn Fn(&Progress) -> Result<super::optimizer::Settings, String> + 'a;

/// The task loss alone (meta model, fine-tuning, the E2E baseline).
pub fn task_loss(inputs: LossInputs) -> LossTerms {
    LossTerms::task(inputs.task())
}

pub struct TrainJob<'a> {
    pub stage: StageId,
    pub cfg: &'a RunConfig,
    pub vit: &'a VitConfig,
    pub recipe: StageRecipe,
    pub data: &'a Data,
    /// Modules before this one are frozen and run untraced.
    pub first_traced: usize,
    /// Parameter names the optimizer updates; everything else stays bit-identical.
    pub trainable: BTreeSet<String>,
    /// Positions of the network whose activations the loss receives
    /// ([`Network::forward_tapped`]).
    pub taps: Vec<usize>,
    pub loss: &'a LossFn<'a>,
    /// Per-step optimizer settings; `None`: every trainable parameter alike.
    pub settings: Option<&'a SettingsFn<'a>>,
    /// Where the per-epoch resumable state goes; `None` trains without checkpoints.
    pub state_path: Option<PathBuf>,
    pub show_progress: bool,
    /// The modules this incubation waited for (its strategy's `depends_on`): recorded in the
    /// start event and the outcome, so that a report or dashboard knows which stages overlap.
    pub depends_on: Vec<usize>,
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

/// Trains the `job.trainable` parameters of `net` and `extras` (the extra networks a loss runs
/// beside it, `aux.{name}.`).
pub fn train(
    job: TrainJob,
    net: &mut Network,
    extras: &mut Extras,
    dev: &Dev,
    log: &mut EventLog,
) -> Result<TrainOutcome, TrainError> {
    let model = &mut WithExtras { net, extras };
    let started = Instant::now();
    let o = &job.cfg.optim;
    let per_step = o.batch_size * o.accum_steps;
    let train_set = job.data.train();
    if train_set.len() < per_step {
        return Err(TrainError::TooLittleData {
            stage: job.stage,
            have: train_set.len(),
            need: per_step,
        });
    }
    let steps_per_epoch = (train_set.len() / per_step) as u64;
    let total_steps = job.recipe.total_steps(steps_per_epoch);
    let epochs = job.recipe.epochs_begun(steps_per_epoch);
    let warmup_steps = job.recipe.warmup_steps(steps_per_epoch);
    if warmup_steps > total_steps {
        return Err(TrainError::WarmupTooLong {
            stage: job.stage,
            warmup_epochs: job.recipe.warmup_epochs,
            warmup_steps,
            total_steps,
        });
    }
    // The optimizer steps of an epoch: all of them but under a step budget's last epoch.
    let steps_in =
        |epoch: usize| (total_steps - epoch as u64 * steps_per_epoch).min(steps_per_epoch);
    let schedule = CosineSchedule {
        form: job.recipe.schedule(o),
        peak_lr: o.base_lr * per_step as f64 / 512.0,
        min_lr: o.min_lr,
        warmup_lr: o.warmup_lr,
        warmup_steps,
        total_steps,
        steps_per_epoch,
    };
    let clip_grad = job.recipe.clip_grad(o);
    let mut opt = AdamW::new(job.trainable.clone(), o.betas, o.eps, o.weight_decay)
        .decaying_embeddings(
            o.incubation_decays_embeddings && job.stage.stage == crate::events::StageKind::Incubate,
        );
    // The count depends on the input's shape only.
    let probe = dev.zeros_like(&(1, job.vit.num_patches(), job.vit.patch_dim()));
    let gflop_per_sample = flops::train_flops_per_sample(model.net, &probe, job.first_traced) / 1e9;

    let mut st = match job.state_path.as_ref().filter(|p| p.exists()) {
        Some(path) => resume(
            &job,
            path,
            model,
            &mut opt,
            dev,
            steps_per_epoch,
            total_steps,
        )?,
        None => TrainState::fresh(job.stage, steps_per_epoch),
    };
    let prior_wall = st.wall_s;
    let wall = |started: &Instant| prior_wall + started.elapsed().as_secs_f64();

    let params_total = model.num_params();
    let params_trainable: usize = model
        .named_params()
        .iter()
        .filter(|(n, _)| job.trainable.contains(n))
        .map(|(_, p)| p.numel())
        .sum();
    let (held_s, queued_s) = host::slurm_wait().unzip();
    log.emit(Event::StageStarted {
        host: host::hostname(),
        pid: std::process::id(),
        epochs,
        steps_per_epoch: steps_per_epoch as usize,
        resumed_epochs: st.epoch,
        params_total,
        params_trainable,
        depends_on: job.depends_on.clone(),
        held_s,
        queued_s,
    });

    let maker = batch_maker(dev, job.cfg, job.vit);
    let every = job.cfg.checkpoint.every_steps;
    let selection = job.data.per_epoch_split();
    while st.epoch < epochs {
        let epoch = st.epoch;
        let epoch_steps = steps_in(epoch);
        let seed = epoch_seed(job.cfg.seed, job.stage, epoch);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let order = epoch_order(train_set.len(), job.cfg.augment.repeated_augment, &mut rng);
        let first_step = st.step_in_epoch;
        let first_image = first_step as usize * per_step;
        let batches = order[first_image..epoch_steps as usize * per_step]
            .chunks(o.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let mut feed = Feed::new(&maker, train_set, batches, true, seed, first_image as u64);
        if st.step_in_epoch > 0 {
            // The same stream, continued where the saved step left it.
            rng.set_word_pos(st.rng_word_pos);
        }
        let bar = progress_bar(&job, epoch, epochs, epoch_steps);
        bar.set_position(st.step_in_epoch);
        let epoch_start = Instant::now();
        for s in first_step..epoch_steps {
            let step = epoch as u64 * steps_per_epoch + s;
            let step_start = Instant::now();
            let lr = schedule.lr(step);
            let mut acc: Option<Gradients<f32, Dev>> = None;
            let mut step_loss = 0.0;
            let mut step_terms = std::collections::BTreeMap::<String, f64>::new();
            let progress = Progress {
                epoch,
                step_in_epoch: s,
                steps_per_epoch,
                epochs,
                total_steps,
            };
            let settings = match job.settings {
                None => Default::default(),
                Some(f) => f(&progress).map_err(|message| TrainError::Plugin {
                    stage: job.stage,
                    what: "optimizer settings",
                    message,
                })?,
            };
            for _ in 0..o.accum_steps {
                let batch =
                    feed.next_train(&maker, &mut rng)
                        .map_err(|message| TrainError::Data {
                            stage: job.stage,
                            message,
                        })?;
                let mut mode = Mode {
                    train: true,
                    rng: Some(&mut rng),
                };
                let (logits, taps) = model.net.forward_tapped(
                    batch.patches.clone(),
                    job.first_traced,
                    job.recipe.drop_path,
                    &mut mode,
                    &job.taps,
                );
                let (logits, tape) = logits.split_tape();
                let taps = taps.into_iter().map(|t| t.split_tape().0).collect();
                let inputs = LossInputs::new(logits, taps, &batch, model.extras, progress);
                let total =
                    (job.loss)(inputs)
                        .total(tape)
                        .map_err(|message| TrainError::Plugin {
                            stage: job.stage,
                            what: "loss",
                            message,
                        })?;
                let loss = total.loss;
                for (name, v) in total.terms {
                    *step_terms.entry(name).or_default() += v as f64 / o.accum_steps as f64;
                }
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
                    Some(a) => opt.accumulate(model, a, &mut grads),
                }
            }
            let mut grads = acc.expect("accum_steps >= 1");
            if o.accum_steps > 1 {
                opt.scale_grads(model, &mut grads, 1.0 / o.accum_steps as f32);
            }
            let grad_norm = opt.grad_norm(model, &mut grads, &settings);
            if let Some(max) = clip_grad {
                if grad_norm > max {
                    opt.scale_grads(model, &mut grads, (max / (grad_norm + 1e-6)) as f32);
                }
            }
            opt.update(model, &mut grads, lr, &settings);
            drop(grads);
            st.train_gflop += gflop_per_sample * per_step as f64 + model.extras.take_flops() / 1e9;
            st.epoch_loss_sum += step_loss;
            st.step_in_epoch = s + 1;
            st.optimizer_step = opt.step;
            st.rng_word_pos = rng.get_word_pos();
            let samples_per_sec = per_step as f64 / step_start.elapsed().as_secs_f64();
            log.emit(Event::TrainStep {
                step: step + 1,
                epoch: epoch as f64 + (s + 1) as f64 / steps_per_epoch as f64,
                loss: step_loss,
                lr,
                grad_norm,
                samples_per_sec,
                // One term is the loss itself: logged only when there are several.
                terms: if step_terms.len() > 1 {
                    step_terms
                } else {
                    Default::default()
                },
            });
            bar.set_message(format!("loss {step_loss:.3} lr {lr:.2e}"));
            bar.inc(1);
            crate::faults::after_step();
            let last_of_epoch = s + 1 == epoch_steps;
            let signal = crate::interrupt::requested();
            if !last_of_epoch && (signal.is_some() || (every > 0 && (step + 1) % every == 0)) {
                st.wall_s = wall(&started);
                save_state(&job, &st, model, &mut opt)?;
                if let Some(signal) = signal {
                    bar.abandon();
                    return Err(interrupted(&job, signal, epoch, s + 1, steps_per_epoch));
                }
            }
        }
        bar.finish_and_clear();
        let train_loss = st.epoch_loss_sum / epoch_steps as f64;
        drop(feed);
        let eval = match eval_and_log(
            &job,
            model.net,
            &maker,
            selection,
            epoch + 1,
            steps_per_epoch,
            log,
        )? {
            Ok(eval) => eval,
            Err(signal) => {
                // every step of the epoch is saved; the rerun evaluates it
                st.wall_s = wall(&started);
                save_state(&job, &st, model, &mut opt)?;
                return Err(interrupted(
                    &job,
                    signal,
                    epoch,
                    epoch_steps,
                    steps_per_epoch,
                ));
            }
        };
        let epoch_s = epoch_start.elapsed().as_secs_f64();
        eprintln!(
            "[{}] epoch {}/{}  train loss {:.4}  {selection} loss {:.4}  {selection} top-1 {:.2}%  {:.0} samples/s",
            job.stage,
            epoch + 1,
            epochs,
            train_loss,
            eval.loss,
            100.0 * eval.top1,
            ((epoch_steps - first_step) as usize * per_step) as f64 / epoch_s
        );
        st.epoch += 1;
        st.step_in_epoch = 0;
        st.rng_word_pos = 0;
        st.epoch_loss_sum = 0.0;
        st.last_train_loss = Some(train_loss);
        st.last_eval = Some(eval);
        if st.best.as_ref().is_none_or(|b| eval.top1 > b.top1) {
            st.best = Some(BestEval {
                epoch: st.epoch,
                top1: eval.top1,
            });
        }
        st.wall_s = wall(&started);
        save_state(&job, &st, model, &mut opt)?;
        if let Some(signal) = crate::interrupt::requested() {
            if st.epoch < epochs {
                return Err(interrupted(&job, signal, st.epoch, 0, steps_per_epoch));
            }
        }
    }
    // The final model on the split every epoch was evaluated on (already done unless the
    // stage trained no epoch) and, with a validation split, on the test split: its one read.
    // (a stop during these finds the state of the last epoch saved)
    let stopped = |signal| interrupted(&job, signal, st.epoch, 0, steps_per_epoch);
    let last = match st.last_eval {
        Some(e) => e,
        None => eval_and_log(
            &job,
            model.net,
            &maker,
            selection,
            epochs,
            steps_per_epoch,
            log,
        )?
        .map_err(stopped)?,
    };
    let (val, test) = match selection {
        EvalSplit::Val => {
            let test = eval_and_log(
                &job,
                model.net,
                &maker,
                EvalSplit::Test,
                epochs,
                steps_per_epoch,
                log,
            )?
            .map_err(stopped)?;
            eprintln!(
                "[{}] test top-1 {:.2}% (the test split, evaluated once)",
                job.stage,
                100.0 * test.top1
            );
            (Some(last), test)
        }
        _ => (None, last),
    };
    let (best_top1, best_epoch) = match &st.best {
        Some(b) => (b.top1, b.epoch),
        None => (last.top1, 0),
    };
    Ok(TrainOutcome {
        top1: test.top1,
        top5: test.top5,
        best_top1,
        best_epoch,
        best_split: selection,
        val,
        test_loss: test.loss,
        wall_s: wall(&started),
        train_gflop: st.train_gflop,
        epochs,
        steps: total_steps,
        final_train_loss: st.last_train_loss.unwrap_or(f64::NAN),
        depends_on: job.depends_on.clone(),
        imported_from: None,
        teachers: Vec::new(),
        stacked: None,
    })
}

/// Evaluates `net` on `split` of the job's data and logs it as of the end of `epoch` (1-based);
/// the signal that stopped it, if one did.
fn eval_and_log(
    job: &TrainJob,
    net: &Network,
    maker: &BatchMaker,
    split: EvalSplit,
    epoch: usize,
    steps_per_epoch: u64,
    log: &mut EventLog,
) -> Result<Result<EvalResult, crate::interrupt::StopSignal>, TrainError> {
    let images = job
        .data
        .split(split)
        .expect("the selection split exists, and test always does");
    let eval = match evaluate(net, maker, images, job.cfg.optim.batch_size) {
        Ok(eval) => eval,
        Err(EvalError::Interrupted(signal)) => return Ok(Err(signal)),
        Err(EvalError::Data(message)) => {
            return Err(TrainError::Data {
                stage: job.stage,
                message,
            })
        }
    };
    log.emit(Event::Eval {
        step: epoch as u64 * steps_per_epoch,
        epoch,
        split,
        top1: eval.top1,
        top5: eval.top5,
        loss: eval.loss,
    });
    Ok(Ok(eval))
}

/// The stop of a stage whose state was just saved at (`epoch`, `step`).
fn interrupted(
    job: &TrainJob,
    signal: crate::interrupt::StopSignal,
    epoch: usize,
    step: u64,
    steps_per_epoch: u64,
) -> TrainError {
    TrainError::Interrupted {
        stage: job.stage,
        signal: signal.name(),
        epoch,
        step,
        steps_per_epoch,
        state: job.state_path.clone(),
    }
}

/// Restores the state saved at `path` into `net` and `opt`; the position to continue from.
fn resume(
    job: &TrainJob,
    path: &std::path::Path,
    net: &mut WithExtras,
    opt: &mut AdamW,
    dev: &Dev,
    steps_per_epoch: u64,
    total_steps: u64,
) -> Result<TrainState, TrainError> {
    let saved = state::load(path, job.stage, net, &job.trainable, dev)?;
    let st = saved.state;
    let refuse = |why: String| TrainError::Resume {
        path: path.into(),
        why,
    };
    if st.steps_per_epoch != steps_per_epoch {
        return Err(refuse(format!(
            "it was written with {} steps per epoch, the run now has {steps_per_epoch} (data or batch settings changed)",
            st.steps_per_epoch
        )));
    }
    let done = st.epoch as u64 * steps_per_epoch + st.step_in_epoch;
    if done > total_steps {
        return Err(refuse(format!(
            "it has trained {done} optimizer steps ({} epochs and {}), the stage now has {total_steps}",
            st.epoch, st.step_in_epoch
        )));
    }
    opt.load_state(net, &saved.moments, st.optimizer_step)
        .map_err(refuse)?;
    eprintln!(
        "[{}] resuming at epoch {} step {}/{steps_per_epoch} from {}",
        job.stage,
        st.epoch + 1,
        st.step_in_epoch,
        path.display()
    );
    Ok(st)
}

fn save_state(
    job: &TrainJob,
    st: &TrainState,
    net: &mut WithExtras,
    opt: &mut AdamW,
) -> Result<(), TrainError> {
    let Some(path) = &job.state_path else {
        return Ok(());
    };
    let moments = opt.state(net);
    state::save(path, st, net, &job.trainable, moments).map_err(|source| TrainError::StateWrite {
        path: path.clone(),
        source,
    })
}

/// Loads a resumable state's trainable parameters without training (used to check resumes).
pub fn load_state(
    path: &std::path::Path,
    stage: StageId,
    net: &mut Network,
    trainable: &BTreeSet<String>,
    dev: &Dev,
) -> Result<TrainState, TrainError> {
    Ok(state::load(path, stage, net, trainable, dev)?.state)
}

fn progress_bar(job: &TrainJob, epoch: usize, epochs: usize, steps: u64) -> ProgressBar {
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
    bar.set_prefix(format!("{} ep {}/{}", job.stage, epoch + 1, epochs));
    bar
}
