//! The training loop shared by every stage: epochs of shuffled batches, gradient accumulation,
//! clipping, AdamW on the trainable set, evaluation after each epoch, a resumable checkpoint
//! after each epoch, and events for the log.

use super::batch::{batch_maker, BatchMaker};
use super::data_parallel::{agree, rank_stream, same_start, NoStop};
use super::evaluate::{evaluate, EvalError, EvalResult, EvalWatch};
use super::feed::{epoch_order, Feed};
pub use super::job::{task_loss, LossFn, SettingsFn, TrainJob};
use super::loss::{LossInputs, Progress};
use super::observe::{
    Ask, EpochBegins, EpochEnds, Evaluated, Observers, Resumed, Started, StepDone,
};
use super::optimizer::AdamW;
pub use super::outcome::{StackedEval, TrainError, TrainOutcome};
pub use super::resume::load_state;
use super::resume::{resume, save_state};
use super::schedule::CosineSchedule;
use super::shard::Ranks;
use super::state::{BestEval, TrainState};
use crate::device::Dev;
use crate::events::{EvalSplit, StageId};
use crate::interrupt::StopSignal;
use crate::model::{flops, Extras, HasParams, Mode, Network, WithExtras};
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

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
/// beside it, `aux.{name}.`), told to `observers` (events, progress, checkpoint policy, stop
/// signals, faults: [`Observers::standard`]).
pub fn train(
    job: TrainJob,
    net: &mut Network,
    extras: &mut Extras,
    dev: &Dev,
    observers: &mut Observers,
) -> Result<TrainOutcome, TrainError> {
    let mut trainer = Trainer::new(job, WithExtras { net, extras }, dev)?;
    let t = &trainer;
    same_start(&t.model, t.job.stage, t.ranks)?;
    observers.started(&trainer.started());
    let result = (|| {
        while trainer.st.epoch < trainer.epochs {
            trainer.epoch(observers)?;
        }
        trainer.finish(observers)
    })();
    if result.is_err() {
        observers.abandoned();
    }
    result
}

/// One stage's training, between its steps: the model, the optimizer, the schedule and the
/// resumable position.
struct Trainer<'a> {
    job: TrainJob<'a>,
    /// The saved state it resumed from, if any.
    resumed_from: Option<std::path::PathBuf>,
    model: WithExtras<'a>,
    maker: BatchMaker<'a>,
    opt: AdamW,
    schedule: CosineSchedule,
    clip_grad: Option<f64>,
    st: TrainState,
    started: Instant,
    prior_wall: f64,
    /// Images per optimizer step over all ranks (the effective batch).
    per_step: usize,
    /// This rank's images per optimizer step.
    rank_step: usize,
    ranks: Ranks,
    /// With several ranks: seconds of this process's steps, and of them in the all-reduce
    /// (the transfer, and waiting for the slowest rank).
    step_s: f64,
    all_reduce_s: f64,
    steps_per_epoch: u64,
    total_steps: u64,
    epochs: usize,
    gflop_per_sample: f64,
    selection: EvalSplit,
}

impl<'a> Trainer<'a> {
    /// Checks the job against its data, builds the optimizer and schedule, and resumes from
    /// the saved state when there is one.
    fn new(
        job: TrainJob<'a>,
        mut model: WithExtras<'a>,
        dev: &'a Dev,
    ) -> Result<Trainer<'a>, TrainError> {
        let started = Instant::now();
        let o = &job.cfg.optim;
        let ranks = crate::collective::current().ranks();
        let rank_step = o.batch_size * o.accum_steps;
        let per_step = rank_step * ranks.world;
        let train_set = job.data.train();
        // each rank's share of an epoch, as PyTorch's samplers pad it (train/shard.rs)
        let shard = train_set.len().div_ceil(ranks.world);
        if shard < rank_step {
            return Err(TrainError::TooLittleData {
                stage: job.stage,
                have: train_set.len(),
                need: per_step,
            });
        }
        let steps_per_epoch = (shard / rank_step) as u64;
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
        let incubating = job.stage.stage == crate::events::StageKind::Incubate;
        let mut opt = AdamW::new(job.trainable.clone(), o.betas, o.eps, o.weight_decay)
            .decaying_embeddings(o.incubation_decays_embeddings && incubating);
        // The count depends on the input's shape only.
        let probe = dev.zeros_like(&(1, job.vit.num_patches(), job.vit.patch_dim()));
        let gflop_per_sample =
            flops::train_flops_per_sample(model.net, &probe, job.first_traced) / 1e9;
        let resumed_from = job.state_path.clone().filter(|p| p.exists());
        let st = match &resumed_from {
            Some(path) => resume(
                &job,
                path,
                &mut model,
                &mut opt,
                dev,
                steps_per_epoch,
                total_steps,
            )?,
            None => TrainState::fresh(job.stage, steps_per_epoch, ranks.world),
        };
        Ok(Trainer {
            resumed_from,
            maker: batch_maker(dev, job.cfg, job.vit),
            selection: job.data.per_epoch_split(),
            prior_wall: st.wall_s,
            job,
            model,
            opt,
            schedule,
            clip_grad,
            st,
            started,
            per_step,
            rank_step,
            ranks,
            step_s: 0.0,
            all_reduce_s: 0.0,
            steps_per_epoch,
            total_steps,
            epochs,
            gflop_per_sample,
        })
    }

    fn started(&self) -> Started {
        let params_trainable: usize = self
            .model
            .named_params()
            .iter()
            .filter(|(n, _)| self.job.trainable.contains(n))
            .map(|(_, p)| p.numel())
            .sum();
        Started {
            epochs: self.epochs,
            steps_per_epoch: self.steps_per_epoch,
            resumed_epochs: self.st.epoch,
            resumed_from: self.resumed_from.clone().map(|path| Resumed {
                path,
                epoch: self.st.epoch,
                step_in_epoch: self.st.step_in_epoch,
            }),
            params_total: self.model.num_params(),
            params_trainable,
            needs: self.job.needs.clone(),
        }
    }

    fn wall(&self) -> f64 {
        self.prior_wall + self.started.elapsed().as_secs_f64()
    }

    /// The optimizer steps of an epoch: all of them but under a step budget's last epoch.
    fn steps_in(&self, epoch: usize) -> u64 {
        (self.total_steps - epoch as u64 * self.steps_per_epoch).min(self.steps_per_epoch)
    }

    fn save(&mut self) -> Result<(), TrainError> {
        self.st.wall_s = self.wall();
        save_state(&self.job, &self.st, &mut self.model, &mut self.opt)
    }

    /// Saves, and the stop at the position saved.
    fn stop(&mut self, signal: StopSignal, epoch: usize, step: u64) -> TrainError {
        match self.save() {
            Ok(()) => interrupted(&self.job, signal, epoch, step, self.steps_per_epoch),
            Err(e) => e,
        }
    }

    /// The rest of the current epoch (from its saved position), its evaluation and its
    /// saved state.
    fn epoch(&mut self, observers: &mut Observers) -> Result<(), TrainError> {
        let o = &self.job.cfg.optim;
        let (epoch, per_step) = (self.st.epoch, self.per_step);
        let epoch_steps = self.steps_in(epoch);
        let seed = epoch_seed(self.job.cfg.seed, self.job.stage, epoch);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let train_set = self.job.data.train();
        let order = epoch_order(
            train_set.len(),
            self.job.cfg.augment.repeated_augment,
            self.ranks,
            &mut rng,
        );
        let first_step = self.st.step_in_epoch;
        let rank_step = self.rank_step;
        let first_image = first_step as usize * rank_step;
        let batches = order[first_image..epoch_steps as usize * rank_step]
            .chunks(o.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let maker = &self.maker;
        // image folders draw each image's augmentation from the seed and its place in the
        // rank's order: a stream per rank
        let feed_seed = rank_stream(seed, self.ranks, u64::MAX);
        let mut feed = Feed::new(
            maker,
            train_set,
            batches,
            true,
            feed_seed,
            first_image as u64,
        );
        if first_step > 0 && self.ranks.world == 1 {
            // The same stream, continued where the saved step left it.
            rng.set_word_pos(self.st.rng_word_pos);
        }
        observers.epoch_begins(&EpochBegins {
            epoch,
            epochs: self.epochs,
            steps: epoch_steps,
            position: first_step,
        });
        let epoch_start = Instant::now();
        for s in first_step..epoch_steps {
            if self.ranks.world > 1 {
                // several ranks: each step's augmentation and drop-path from a stream of
                // its own per rank and step, so a resume needs no rank's stream position
                rng = ChaCha8Rng::seed_from_u64(rank_stream(seed, self.ranks, s));
            }
            let ask = self.step(&mut feed, &mut rng, epoch, s, epoch_steps, observers)?;
            let ask = agree(ask);
            let last_of_epoch = s + 1 == epoch_steps;
            match ask {
                // the epoch's end saves anyway (and stops after it if asked)
                _ if last_of_epoch => {}
                Ask::Continue => {}
                Ask::Save => self.save()?,
                Ask::Stop(signal) => return Err(self.stop(signal, epoch, s + 1)),
            }
        }
        let train_loss = self.st.epoch_loss_sum / epoch_steps as f64;
        drop(feed);
        let eval = match self.evaluate(self.selection, epoch + 1, observers)? {
            Ok(eval) => eval,
            // every step of the epoch is saved; the rerun evaluates it
            Err(signal) => return Err(self.stop(signal, epoch, epoch_steps)),
        };
        let done = ((epoch_steps - first_step) as usize * per_step) as f64;
        let samples_per_sec = done / epoch_start.elapsed().as_secs_f64();
        let st = &mut self.st;
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
        self.save()?;
        let ask = observers.epoch_ends(&EpochEnds {
            epoch: epoch + 1,
            epochs: self.epochs,
            train_loss,
            split: self.selection,
            eval,
            samples_per_sec,
        });
        let ask = agree(ask);
        if let Ask::Stop(signal) = ask {
            if self.st.epoch < self.epochs {
                let e = interrupted(&self.job, signal, self.st.epoch, 0, self.steps_per_epoch);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Optimizer step `s` of `epoch`: `accum_steps` batches forward and backward, clipping,
    /// the update; what the observers ask after it.
    fn step(
        &mut self,
        feed: &mut Feed,
        rng: &mut ChaCha8Rng,
        epoch: usize,
        s: u64,
        epoch_steps: u64,
        observers: &mut Observers,
    ) -> Result<Ask, TrainError> {
        let job = &self.job;
        let o = &job.cfg.optim;
        let step = epoch as u64 * self.steps_per_epoch + s;
        let step_start = Instant::now();
        let lr = self.schedule.lr(step);
        let mut acc: Option<Gradients<f32, Dev>> = None;
        let mut step_loss = 0.0;
        let mut step_terms = std::collections::BTreeMap::<String, f64>::new();
        let progress = Progress {
            epoch,
            step_in_epoch: s,
            steps_per_epoch: self.steps_per_epoch,
            epochs: self.epochs,
            total_steps: self.total_steps,
        };
        let settings = match job.settings {
            None => Default::default(),
            Some(f) => f(&progress).map_err(|source| TrainError::PartSettings {
                stage: job.stage,
                source,
            })?,
        };
        let model = &mut self.model;
        for _ in 0..o.accum_steps {
            let batch = feed
                .next_train(&self.maker, rng)
                .map_err(|source| TrainError::Loader {
                    stage: job.stage,
                    source,
                })?;
            let mut mode = Mode {
                train: true,
                rng: Some(&mut *rng),
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
            let total = (job.loss)(inputs)
                .total(tape)
                .map_err(|source| TrainError::LossTerms {
                    stage: job.stage,
                    source,
                })?;
            for (name, v) in total.terms {
                *step_terms.entry(name).or_default() += v as f64 / o.accum_steps as f64;
            }
            let value = total.loss.array();
            // several ranks learn of it together, after the step's all-reduce: a rank that
            // left now would leave the others waiting in it
            if !value.is_finite() && self.ranks.world == 1 {
                return Err(TrainError::NonFinite {
                    stage: job.stage,
                    value,
                    epoch,
                    step,
                });
            }
            step_loss += value as f64 / o.accum_steps as f64;
            let mut grads = total.loss.backward();
            match acc.as_mut() {
                None => acc = Some(grads),
                Some(a) => self.opt.accumulate(model, a, &mut grads),
            }
        }
        let opt = &mut self.opt;
        let mut grads = acc.expect("accum_steps >= 1");
        if o.accum_steps > 1 {
            opt.scale_grads(model, &mut grads, 1.0 / o.accum_steps as f32);
        }
        if self.ranks.world > 1 {
            // the mean over the ranks of the gradients and of what the log reports
            let mut also: Vec<f32> = std::iter::once(step_loss as f32)
                .chain(step_terms.values().map(|&v| v as f32))
                .collect();
            let ranks = crate::collective::current();
            let reduce_start = Instant::now();
            opt.average_over_ranks(model, &mut grads, &mut also, ranks);
            self.all_reduce_s += reduce_start.elapsed().as_secs_f64();
            step_loss = also[0] as f64;
            for (v, m) in step_terms.values_mut().zip(&also[1..]) {
                *v = *m as f64;
            }
            if !step_loss.is_finite() {
                return Err(TrainError::NonFinite {
                    stage: job.stage,
                    value: step_loss as f32,
                    epoch,
                    step,
                });
            }
        }
        let grad_norm = opt.grad_norm(model, &mut grads, &settings);
        if let Some(max) = self.clip_grad {
            if grad_norm > max {
                opt.scale_grads(model, &mut grads, (max / (grad_norm + 1e-6)) as f32);
            }
        }
        opt.update(model, &mut grads, lr, &settings);
        drop(grads);
        self.step_s += step_start.elapsed().as_secs_f64();
        let st = &mut self.st;
        let per_step = self.per_step;
        // every rank's passes: the extra networks ran the same shapes on each rank's batch
        let extras = model.extras.take_flops() * self.ranks.world as f64;
        st.train_gflop += self.gflop_per_sample * per_step as f64 + extras / 1e9;
        st.epoch_loss_sum += step_loss;
        st.step_in_epoch = s + 1;
        st.optimizer_step = opt.step;
        st.rng_word_pos = rng.get_word_pos();
        Ok(observers.step(&StepDone {
            step: step + 1,
            epoch,
            step_in_epoch: s + 1,
            epoch_steps,
            steps_per_epoch: self.steps_per_epoch,
            loss: step_loss,
            lr,
            grad_norm,
            samples_per_sec: per_step as f64 / step_start.elapsed().as_secs_f64(),
            terms: &step_terms,
        }))
    }

    /// Evaluates the model on `split` and tells the observers, as of the end of `epoch`
    /// (1-based); the signal that stopped it, if one did.
    fn evaluate(
        &mut self,
        split: EvalSplit,
        epoch: usize,
        observers: &mut Observers,
    ) -> Result<Result<EvalResult, StopSignal>, TrainError> {
        let job = &self.job;
        let images = job
            .data
            .split(split)
            .expect("the selection split exists, and test always does");
        let bs = job.cfg.optim.batch_size;
        let watch: &mut dyn EvalWatch = if self.ranks.world > 1 {
            &mut NoStop(observers)
        } else {
            observers
        };
        let result = match evaluate(self.model.net, &self.maker, images, bs, watch) {
            Ok(eval) => eval,
            Err(EvalError::Interrupted(signal)) => return Ok(Err(signal)),
            Err(source) => {
                return Err(TrainError::Eval {
                    stage: job.stage,
                    source,
                })
            }
        };
        observers.evaluated(&Evaluated {
            step: epoch as u64 * self.steps_per_epoch,
            epoch,
            split,
            result,
        });
        Ok(Ok(result))
    }

    /// The final model on the split every epoch was evaluated on (already done unless the
    /// stage trained no epoch) and, with a validation split, on the test split: its one read.
    /// (A stop during these finds the state of the last epoch saved.)
    fn finish(&mut self, observers: &mut Observers) -> Result<TrainOutcome, TrainError> {
        if self.ranks.world > 1 && self.ranks.rank == 0 && self.step_s > 0.0 {
            eprintln!(
                "[{}] {} ranks: {:.1}% of rank 0's step time in the gradients' all-reduce (transfer and waiting for the slowest rank)",
                self.job.stage,
                self.ranks.world,
                100.0 * self.all_reduce_s / self.step_s
            );
        }
        let (epochs, steps_per_epoch) = (self.epochs, self.steps_per_epoch);
        let done = self.st.epoch;
        let stopped = |job: &TrainJob, signal| interrupted(job, signal, done, 0, steps_per_epoch);
        let last = match self.st.last_eval {
            Some(e) => e,
            None => self
                .evaluate(self.selection, epochs, observers)?
                .map_err(|s| stopped(&self.job, s))?,
        };
        let (val, test) = match self.selection {
            EvalSplit::Val => {
                let test = self
                    .evaluate(EvalSplit::Test, epochs, observers)?
                    .map_err(|s| stopped(&self.job, s))?;
                if self.ranks.rank == 0 {
                    eprintln!(
                        "[{}] test top-1 {:.2}% (the test split, evaluated once)",
                        self.job.stage,
                        100.0 * test.top1
                    );
                }
                (Some(last), test)
            }
            _ => (None, last),
        };
        let st = &self.st;
        let (best_top1, best_epoch) = match &st.best {
            Some(b) => (b.top1, b.epoch),
            None => (last.top1, 0),
        };
        Ok(TrainOutcome {
            top1: test.top1,
            top5: test.top5,
            best_top1,
            best_epoch,
            best_split: self.selection,
            val,
            test_loss: test.loss,
            wall_s: self.wall(),
            train_gflop: st.train_gflop,
            epochs,
            steps: self.total_steps,
            final_train_loss: st.last_train_loss.unwrap_or(f64::NAN),
            depends_on: self.job.needs.iter().filter_map(|n| n.module).collect(),
            imported_from: None,
            teachers: Vec::new(),
            stacked: None,
        })
    }
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
