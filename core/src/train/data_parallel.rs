//! What the training loop does differently when several ranks train one stage together
//! (`crate::collective`): their random streams, the asks they agree on, the check that they
//! start alike, and an evaluation no single rank stops. One process alone is untouched.

use super::evaluate::EvalWatch;
use super::observe::{Ask, Observers};
use super::outcome::TrainError;
use super::shard::Ranks;
use crate::events::StageId;
use crate::interrupt::StopSignal;
use crate::model::HasParams;

/// The random stream of rank `ranks.rank` at step `step` of the epoch seeded by `seed`
/// (`u64::MAX`: its image-folder stream). One process alone keeps the epoch's own stream.
pub fn rank_stream(seed: u64, ranks: Ranks, step: u64) -> u64 {
    if ranks.world == 1 {
        return seed;
    }
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in (ranks.rank as u64)
        .to_le_bytes()
        .into_iter()
        .chain(step.to_le_bytes())
    {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

/// The ask every rank acts on: a signal to any rank stops them all after the same step
/// ([`crate::interrupt::agree_ranks`]); a save asked on one saves on all.
pub fn agree(ask: Ask) -> Ask {
    let (local, save) = match ask {
        Ask::Stop(signal) => (Some(signal), 0),
        Ask::Save => (None, 1),
        Ask::Continue => (None, 0),
    };
    match crate::interrupt::agree_ranks(local, save) {
        (Some(signal), _) => Ask::Stop(signal),
        (None, saves) if saves > 0 => Ask::Save,
        (None, _) => Ask::Continue,
    }
}

/// Several ranks must start from the same parameters (the same seed and files make them;
/// another config or binary on one rank would not): rank 0's are broadcast and compared, and
/// the ranks fail together if any differs.
pub fn same_start(model: &impl HasParams, stage: StageId, ranks: Ranks) -> Result<(), TrainError> {
    if ranks.world == 1 {
        return Ok(());
    }
    let params = model.named_params();
    let mine: Vec<f32> = params.iter().flat_map(|(_, p)| p.to_vec()).collect();
    let mut rank0 = mine.clone();
    let c = crate::collective::current();
    c.broadcast_f32(&mut rank0);
    let first = mine
        .iter()
        .zip(&rank0)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    let mut differing = [first.is_some() as u64];
    c.sum_u64(&mut differing);
    if differing[0] == 0 {
        return Ok(());
    }
    let mut at = 0;
    let param = first.and_then(|i| {
        params.iter().find_map(|(name, p)| {
            at += p.numel();
            (i < at).then(|| name.clone())
        })
    });
    Err(TrainError::RanksDisagree {
        stage,
        ranks: differing[0],
        rank: ranks.rank,
        param,
    })
}

/// Evaluation's watch without its stop: with several ranks a signal to one must not stop its
/// evaluation alone (the others would wait for it in the next collective); the ranks agree
/// on a stop after the epoch.
pub struct NoStop<'o, 'l>(pub &'o mut Observers<'l>);

impl EvalWatch for NoStop<'_, '_> {
    fn before_batch(&mut self) -> Option<StopSignal> {
        None
    }
    fn after_batch(&mut self) {
        self.0.after_batch()
    }
}
