//! The resumable state of a training stage: everything a continuation needs to end
//! byte-identical to an uninterrupted run.
//!
//! One safetensors file per stage (`RUN/stages/<stage>/state.safetensors`):
//! - the trained parameters under their path names (only those the stage trains: an
//!   incubation's frozen meta layers are rebuilt from the meta model, not copied);
//! - AdamW's moments as `optim.m.<name>` and `optim.v.<name>`, and the number of updates each
//!   parameter received as `optim.t.<name>` (one value);
//! - a [`TrainState`] as JSON in the metadata key `incubator.train_state`: counters, the
//!   position of the epoch's random stream, and the running sums of the outcome.
//!
//! The epoch's random stream (shuffle, augmentation, drop-path) is seeded from the run seed, the
//! stage and the epoch; the state stores how far it had advanced, so a resume in the middle of
//! an epoch reshuffles the same order and continues the same stream.

use super::evaluate::EvalResult;
use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::device::Dev;
use crate::events::StageId;
use crate::model::HasParams;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bumped when the layout changes; an older state is refused with a clear message.
pub const STATE_FORMAT: u32 = 2;
const METADATA_KEY: &str = "incubator.train_state";
const OPTIM_PREFIX: &str = "optim.";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    pub format: u32,
    /// The stage that wrote it (`incubate-2`); a state is never loaded into another stage.
    pub stage: String,
    /// Epochs finished, evaluation included.
    pub epoch: usize,
    /// Optimizer steps already taken inside epoch `epoch` (0 at an epoch boundary).
    pub step_in_epoch: u64,
    /// Steps per epoch when the state was written; a different value means other data or
    /// batch settings, and the state cannot continue that run.
    pub steps_per_epoch: u64,
    /// AdamW steps taken so far (its bias correction).
    pub optimizer_step: u64,
    /// Word position of epoch `epoch`'s random stream after its last step.
    pub rng_word_pos: u128,
    /// Sum of the step losses of epoch `epoch` so far (its mean is the epoch's train loss).
    pub epoch_loss_sum: f64,
    /// Mean train loss of the last finished epoch.
    pub last_train_loss: Option<f64>,
    /// Evaluation after the last finished epoch.
    pub last_eval: Option<EvalResult>,
    /// The finished epoch with the best top-1 so far (states written before it: none).
    #[serde(default)]
    pub best: Option<BestEval>,
    /// The ranks that trained it together (data parallelism): each epoch's shards and the
    /// effective batch depend on it, so it resumes with as many. Not written for one.
    #[serde(default = "one_rank", skip_serializing_if = "is_one_rank")]
    pub ranks: usize,
    /// Training time and compute spent so far, across every process that worked on the stage.
    pub wall_s: f64,
    pub train_gflop: f64,
}

/// The best evaluation of a stage so far: its epoch (1-based) and top-1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestEval {
    pub epoch: usize,
    pub top1: f64,
}

fn one_rank() -> usize {
    1
}

fn is_one_rank(ranks: &usize) -> bool {
    *ranks == 1
}

impl TrainState {
    /// The state of a stage that has not taken a step.
    pub fn fresh(stage: StageId, steps_per_epoch: u64, ranks: usize) -> TrainState {
        TrainState {
            format: STATE_FORMAT,
            stage: stage.slug(),
            epoch: 0,
            step_in_epoch: 0,
            steps_per_epoch,
            optimizer_step: 0,
            rng_word_pos: 0,
            epoch_loss_sum: 0.0,
            last_train_loss: None,
            last_eval: None,
            best: None,
            ranks,
            wall_s: 0.0,
            train_gflop: 0.0,
        }
    }

    /// Where training continues: epoch and step within it.
    pub fn position(&self) -> (usize, u64) {
        (self.epoch, self.step_in_epoch)
    }
}

/// A state read back, with the moments it carries.
pub struct SavedState {
    pub state: TrainState,
    pub moments: BTreeMap<String, Vec<f32>>,
    pub file: Checkpoint,
}

/// Writes `state`, the trainable parameters of `net` and the optimizer `moments` atomically.
pub fn save(
    path: &Path,
    state: &TrainState,
    net: &impl HasParams,
    trainable: &BTreeSet<String>,
    moments: BTreeMap<String, Vec<f32>>,
) -> std::io::Result<()> {
    let mut tensors = checkpoint::params_of(net);
    tensors.retain(|name, _| trainable.contains(name));
    for (k, v) in moments {
        tensors.insert(format!("{OPTIM_PREFIX}{k}"), (vec![v.len()], v));
    }
    let json = serde_json::to_string(state).expect("a TrainState always serialises");
    let metadata = BTreeMap::from([(METADATA_KEY.to_string(), json)]);
    checkpoint::save(path, &tensors, &metadata)
}

/// Reads the state of stage `stage` and loads its trainable parameters into `net`, which must
/// be the network the state came from (the same hybrid, rebuilt). Parameters outside
/// `trainable` are left as they are.
pub fn load(
    path: &Path,
    stage: StageId,
    net: &mut impl HasParams,
    trainable: &BTreeSet<String>,
    dev: &Dev,
) -> Result<SavedState, CheckpointError> {
    from_checkpoint(checkpoint::read(path, "")?, stage, net, trainable, dev)
}

/// [`load`] on a checkpoint already read.
pub fn from_checkpoint(
    file: Checkpoint,
    stage: StageId,
    net: &mut impl HasParams,
    trainable: &BTreeSet<String>,
    dev: &Dev,
) -> Result<SavedState, CheckpointError> {
    let path = file.path.clone();
    let path = path.as_path();
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.into(),
        reason,
    };
    let json = file.metadata.get(METADATA_KEY).ok_or_else(|| {
        corrupt("it has no training state; it was written by an older incubator".into())
    })?;
    let state: TrainState = serde_json::from_str(json)
        .map_err(|e| corrupt(format!("its training state does not parse: {e}")))?;
    if state.format != STATE_FORMAT {
        return Err(corrupt(format!(
            "its state format is {}, this incubator reads {STATE_FORMAT}",
            state.format
        )));
    }
    if state.stage != stage.slug() {
        return Err(CheckpointError::Mismatch {
            path: path.into(),
            problems: format!(
                "it is the state of stage {}, not of {}",
                state.stage,
                stage.slug()
            ),
        });
    }
    file.load_matching(
        net,
        "",
        dev,
        |name| trainable.contains(name),
        |name| !name.starts_with(OPTIM_PREFIX),
    )?;
    let moments = file
        .tensors
        .iter()
        .filter_map(|(k, (_, d))| {
            k.strip_prefix(OPTIM_PREFIX)
                .map(|k| (k.to_string(), d.clone()))
        })
        .collect();
    Ok(SavedState {
        state,
        moments,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_json_with_a_large_stream_position() {
        let mut s = TrainState::fresh(StageId::incubate(3), 17, 1);
        s.rng_word_pos = (1u128 << 70) + 5;
        s.last_eval = Some(EvalResult {
            top1: 0.5,
            top5: 0.75,
            loss: 1.25,
        });
        s.best = Some(BestEval {
            epoch: 2,
            top1: 0.625,
        });
        s.last_train_loss = Some(0.1 + 0.2);
        let json = serde_json::to_string(&s).unwrap();
        let back: TrainState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.last_train_loss.unwrap().to_bits(),
            (0.1f64 + 0.2).to_bits()
        );
    }
}
