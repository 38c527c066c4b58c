//! A stage's resumable position: restored when training starts (refused, with the reason,
//! when the run changed under it) and saved where the trainer's observers ask.

use super::job::TrainJob;
use super::optimizer::AdamW;
use super::outcome::TrainError;
use super::state::{self, TrainState};
use crate::device::Dev;
use crate::events::StageId;
use crate::model::{Network, WithExtras};
use std::collections::BTreeSet;

/// Restores the state saved at `path` into `net` and `opt`; the position to continue from.
pub(super) fn resume(
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
    let world = crate::collective::current().ranks().world;
    if st.ranks != world {
        return Err(refuse(format!(
            "it was written by {} rank(s) training together, this run has {world}: resume it \
             with as many (`mpirun -np {}`), since each epoch's shards and the effective batch \
             depend on it, or start the stage again in a new run directory",
            st.ranks, st.ranks
        )));
    }
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
        .map_err(|e| refuse(e.to_string()))?;
    Ok(st)
}

pub(super) fn save_state(
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
