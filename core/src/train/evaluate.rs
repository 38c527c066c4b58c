//! Evaluation: top-1, top-5 and cross-entropy of a model on a whole split, without
//! augmentation or drop-path, as training reports it after each epoch and `incubator eval`
//! reports it on any split.

use super::batch::BatchMaker;
use super::feed::Feed;
use crate::data::Images;
use crate::model::{Mode, Network};
use dfdx::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalResult {
    #[serde(deserialize_with = "f64_or_nan")]
    pub top1: f64,
    /// NaN in states written before top-5 was recorded.
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub top5: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
}

pub(crate) fn nan() -> f64 {
    f64::NAN
}

pub(crate) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use serde::Deserialize;
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Why an evaluation ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The loader cannot go on.
    #[error(transparent)]
    Loader(#[from] crate::data::folder::LoaderError),
    /// Not one image of the split could be decoded.
    #[error("none of the {images} evaluation images could be decoded (see the warnings above)")]
    NothingDecoded { images: usize },
    /// A stop signal arrived (checked between batches: a long evaluation stops too).
    #[error("stopped by {} during evaluation", .0.name())]
    Interrupted(crate::interrupt::StopSignal),
}

/// What an evaluation asks between its batches: whether to stop (a signal), and that a batch
/// is done (fault injection counts them).
pub trait EvalWatch {
    fn before_batch(&mut self) -> Option<crate::interrupt::StopSignal>;
    fn after_batch(&mut self);
}

/// Top-1 accuracy and cross-entropy on a whole split, without augmentation or drop-path.
/// An image folder's unreadable images are left out (with a warning); an error when the
/// loader cannot go on. An image whose logits are not all finite counts as wrong (in top-1
/// and top-5; its loss makes the mean loss NaN), never as a hit.
///
/// Ranks training together (`crate::collective`) share the split: rank r evaluates images r,
/// r + N, ... (no padding, unlike PyTorch's `DistributedSampler`: every image counts once) and
/// the counts and loss are summed over the ranks, so every rank gets the whole split's result.
pub fn evaluate(
    net: &Network,
    maker: &BatchMaker,
    data: Images,
    batch_size: usize,
    watch: &mut dyn EvalWatch,
) -> Result<EvalResult, EvalError> {
    let ranks = crate::collective::current();
    let share = ranks.ranks();
    let mine: Vec<usize> = (share.rank..data.len()).step_by(share.world).collect();
    let counts = count(net, maker, data, &mine, batch_size, watch, |_, _| {})?;
    let mut whole = [counts.correct, counts.correct5, counts.seen];
    let mut loss = [counts.loss_sum];
    ranks.sum_u64(&mut whole);
    ranks.sum_f64(&mut loss);
    Counts {
        correct: whole[0],
        correct5: whole[1],
        seen: whole[2],
        loss_sum: loss[0],
    }
    .result(data.len())
}

/// [`evaluate`], also handing each image's (label, predicted class) to `each` (a confusion
/// matrix is built from these); no class for an image whose logits are not finite.
pub fn evaluate_each(
    net: &Network,
    maker: &BatchMaker,
    data: Images,
    batch_size: usize,
    watch: &mut dyn EvalWatch,
    each: impl FnMut(usize, Option<usize>),
) -> Result<EvalResult, EvalError> {
    let indices: Vec<usize> = (0..data.len()).collect();
    count(net, maker, data, &indices, batch_size, watch, each)?.result(data.len())
}

/// What an evaluation counts, before it is turned into rates (and summed over ranks).
struct Counts {
    correct: u64,
    correct5: u64,
    seen: u64,
    loss_sum: f64,
}

impl Counts {
    /// The rates over the images seen; an error when a split of `images` had none decoded.
    fn result(&self, images: usize) -> Result<EvalResult, EvalError> {
        if self.seen == 0 && images > 0 {
            return Err(EvalError::NothingDecoded { images });
        }
        let seen = self.seen.max(1) as f64;
        Ok(EvalResult {
            top1: self.correct as f64 / seen,
            top5: self.correct5 as f64 / seen,
            loss: self.loss_sum / seen,
        })
    }
}

/// The counts over the images `indices` of `data`.
fn count(
    net: &Network,
    maker: &BatchMaker,
    data: Images,
    indices: &[usize],
    batch_size: usize,
    watch: &mut dyn EvalWatch,
    mut each: impl FnMut(usize, Option<usize>),
) -> Result<Counts, EvalError> {
    let (mut correct, mut correct5, mut loss_sum) = (0u64, 0u64, 0.0f64);
    let batches = indices.chunks(batch_size).map(<[usize]>::to_vec).collect();
    let mut feed = Feed::new(maker, data, batches, false, 0, 0);
    let mut seen = 0u64;
    while let Some(batch) = feed.next_eval(maker) {
        if let Some(signal) = watch.before_batch() {
            return Err(EvalError::Interrupted(signal));
        }
        let batch = batch?;
        seen += batch.labels.len() as u64;
        if batch.labels.is_empty() {
            continue;
        }
        let logits = net.forward(batch.patches, 0.0, &mut Mode::eval());
        let classes = logits.shape().1;
        let values = logits.as_vec();
        for (k, &label) in batch.labels.iter().enumerate() {
            let row = &values[k * classes..(k + 1) * classes];
            if !row.iter().all(|v| v.is_finite()) {
                loss_sum = f64::NAN;
                each(label, None);
                continue;
            }
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
            loss_sum += (lse - row[label]) as f64;
            let argmax = row
                .iter()
                .enumerate()
                .fold(0, |best, (i, v)| if *v > row[best] { i } else { best });
            correct += (argmax == label) as u64;
            // In the top five when fewer than five classes score strictly higher (a tie
            // counts for the label, as torch.topk's order among equals is unspecified).
            let higher = row.iter().filter(|&&v| v > row[label]).count();
            correct5 += (higher < 5) as u64;
            each(label, Some(argmax));
        }
        watch.after_batch();
    }
    Ok(Counts {
        correct,
        correct5,
        seen,
        loss_sum,
    })
}
