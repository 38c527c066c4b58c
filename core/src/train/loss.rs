//! Losses: the task loss (cross-entropy against soft targets, as timm's
//! `SoftTargetCrossEntropy`), distillation, and the named, weighted terms a stage's loss is
//! made of.
//!
//! A loss sees tape-less copies of the logits and the tapped activations; the forward pass's
//! tape is merged into the weighted sum afterwards ([`LossTerms::total`]). So a loss may use
//! any of them any number of times, or only a tapped activation, and gradients still reach
//! every trained parameter before it.

use super::batch::Batch;
use crate::device::{Act, Dev, Rows};
use crate::model::{Extras, Traced};
use dfdx::prelude::*;

pub type Loss = Tensor<Rank0, f32, Dev, OwnedTape<f32, Dev>>;

/// Mean over the batch of `-sum_c target_c * log_softmax(logits)_c`.
pub fn soft_cross_entropy(logits: Rows<OwnedTape<f32, Dev>>, targets: Rows<NoneTape>) -> Loss {
    cross_entropy_with_logits_loss(logits, targets)
}

/// Hinton's distillation term as DeiT and m2mKD compute it:
/// `T^2 * sum KL(softmax(teacher/T) || softmax(student/T)) / (batch * classes)`, the KL summed
/// over the batch and divided by the number of logits (`F.kl_div(..., reduction='sum') * T * T
/// / outputs.numel()`), so a term is 1/classes of the per-sample KL. Plugins (m2mKD, meta-kd)
/// combine it with the task loss.
pub fn kl_distillation(
    student: Rows<OwnedTape<f32, Dev>>,
    teacher: Rows<NoneTape>,
    temperature: f32,
) -> Loss {
    let t = temperature;
    let classes = student.shape().1 as f32;
    let teacher_probs = (teacher / t).softmax::<Axis<1>>();
    // dfdx's loss is the batch mean of the per-sample KL (its element mean times classes)
    kl_div_with_logits_loss(student / t, teacher_probs) * (t * t / classes)
}

/// Mean squared difference of two activations (feature regression, hint losses).
pub fn mse(x: Act<OwnedTape<f32, Dev>>, target: Act<NoneTape>) -> Loss {
    mse_loss(x, target)
}

/// Where training is: lets a loss anneal its weights as a pure function of the position, so
/// a resumed stage computes exactly what an uninterrupted one does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Epochs finished before this step.
    pub epoch: usize,
    /// Optimizer steps finished before this one in the epoch.
    pub step_in_epoch: u64,
    pub steps_per_epoch: u64,
    /// The stage's length in epochs begun (the last one short under a step budget).
    pub epochs: usize,
    /// The stage's length in optimizer steps.
    pub total_steps: u64,
}

impl Progress {
    /// Epochs done, fractional (0 at the first step).
    pub fn epochs_done(&self) -> f64 {
        self.epoch as f64 + self.step_in_epoch as f64 / self.steps_per_epoch.max(1) as f64
    }

    /// The stage's progress in [0, 1).
    pub fn fraction(&self) -> f64 {
        let done = self.epoch as u64 * self.steps_per_epoch + self.step_in_epoch;
        done as f64 / self.total_steps.max(1) as f64
    }
}

/// What a loss is computed from.
pub struct LossInputs<'a> {
    logits: Rows<NoneTape>,
    taps: Vec<Act<NoneTape>>,
    pub batch: &'a Batch,
    /// The hybrid's extra networks (auxiliary heads, teachers): run them with
    /// [`Extras::run`] / [`Extras::predict`], which count their compute.
    pub extras: &'a Extras,
    pub progress: Progress,
}

impl<'a> LossInputs<'a> {
    /// `logits` and `taps` with their tapes taken off (the forward tape is merged back in by
    /// [`LossTerms::total`]).
    pub fn new(
        logits: Rows<NoneTape>,
        taps: Vec<Act<NoneTape>>,
        batch: &'a Batch,
        extras: &'a Extras,
        progress: Progress,
    ) -> LossInputs<'a> {
        LossInputs {
            logits,
            taps,
            batch,
            extras,
            progress,
        }
    }

    /// The network's logits, traced.
    pub fn logits(&self) -> Rows<Traced> {
        self.logits.retaped()
    }

    /// The activation at the `k`-th tap the hybrid named, traced: exactly the tensor the part
    /// after that point receives.
    pub fn tap(&self, k: usize) -> Act<Traced> {
        match self.taps.get(k) {
            Some(t) => t.retaped(),
            None => panic!(
                "the loss asked for tap {k}, but the hybrid names {} taps (Hybrid::taps)",
                self.taps.len()
            ),
        }
    }

    /// The activation at the `k`-th tap without gradients (the input of a teacher's module).
    pub fn tap_plain(&self, k: usize) -> Act<NoneTape> {
        self.tap(k).retaped()
    }

    /// The task loss on the logits (soft-target cross-entropy).
    pub fn task(&self) -> Loss {
        soft_cross_entropy(self.logits(), self.batch.targets.clone())
    }
}

/// Named, weighted loss terms; training minimises their weighted sum and logs each term's
/// (unweighted) value under its name.
#[derive(Default)]
pub struct LossTerms {
    terms: Vec<(String, f32, Loss)>,
}

/// The trained-on total and each term's unweighted value.
pub struct Total {
    pub loss: Loss,
    pub terms: Vec<(String, f32)>,
}

/// Loss terms a loss function returned that cannot be summed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TermsError {
    #[error("loss term name {0:?}: use letters, digits, '_' and '-' only")]
    BadName(String),
    #[error("two loss terms are named {0:?}")]
    Repeated(String),
    #[error("the loss returned no terms")]
    None,
}

impl LossTerms {
    pub fn new() -> LossTerms {
        LossTerms::default()
    }

    /// The task loss alone, under the name `task`.
    pub fn task(loss: Loss) -> LossTerms {
        LossTerms::new().with("task", 1.0, loss)
    }

    /// Adds `weight * loss` under `name` (e.g. `aux_ce`, `kd`, `recon`).
    pub fn with(mut self, name: &str, weight: f32, loss: Loss) -> LossTerms {
        self.terms.push((name.to_string(), weight, loss));
        self
    }

    /// The weighted sum with the forward pass's `tape` merged in; refuses no terms, empty or
    /// repeated names.
    pub fn total(self, tape: OwnedTape<f32, Dev>) -> Result<Total, TermsError> {
        let mut names: Vec<&str> = Vec::new();
        for (name, _, _) in &self.terms {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(TermsError::BadName(name.clone()));
            }
            if names.contains(&name.as_str()) {
                return Err(TermsError::Repeated(name.clone()));
            }
            names.push(name);
        }
        let mut values = Vec::with_capacity(self.terms.len());
        let mut sum: Option<Loss> = None;
        for (name, weight, loss) in self.terms {
            values.push((name, loss.array()));
            // A weight of 1 adds no operation, so a single task term trains exactly as the
            // bare task loss did.
            let weighted = if weight == 1.0 { loss } else { loss * weight };
            sum = Some(match sum {
                None => weighted,
                Some(s) => s + weighted,
            });
        }
        let Some(sum) = sum else {
            return Err(TermsError::None);
        };
        let (sum, own) = sum.split_tape();
        Ok(Total {
            loss: sum.put_tape(own.merge(tape)),
            terms: values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::tensor_from_slice;

    /// The official normalisation, computed by hand: 2 samples of 3 classes at T = 2.
    #[test]
    fn distillation_is_the_summed_kl_times_t_squared_over_batch_times_classes() {
        let dev = crate::device::new_device(0);
        let student = [1.0f32, 0.0, -1.0, 0.5, 0.5, 2.0];
        let teacher = [2.0f32, 1.0, 0.0, -1.0, 0.0, 1.0];
        let t = 2.0f32;
        let softmax = |row: &[f32]| -> Vec<f64> {
            let e: Vec<f64> = row.iter().map(|&v| ((v / t) as f64).exp()).collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(|v| v / z).collect()
        };
        let mut kl_sum = 0.0f64;
        for r in 0..2 {
            let (p, q) = (
                softmax(&teacher[3 * r..3 * r + 3]),
                softmax(&student[3 * r..3 * r + 3]),
            );
            kl_sum += (0..3).map(|c| p[c] * (p[c] / q[c]).ln()).sum::<f64>();
        }
        let want = kl_sum * (t * t) as f64 / (2.0 * 3.0);
        let s = tensor_from_slice(&dev, &student, (2usize, 3usize)).leaky_traced();
        let got = kl_distillation(s, tensor_from_slice(&dev, &teacher, (2usize, 3usize)), t);
        let got = got.array() as f64;
        assert!(
            (got - want).abs() < 1e-6 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        // the batch mean of the per-sample KL (what it was) is `classes` times larger
        assert!((kl_sum * 4.0 / 2.0 / got - 3.0).abs() < 1e-4);
    }
}
