//! The task loss: cross-entropy against soft targets (label smoothing and mixup/cutmix make
//! targets probability vectors), as timm's `SoftTargetCrossEntropy`.

use crate::device::{Dev, Rows};
use dfdx::prelude::*;

pub type Loss = Tensor<Rank0, f32, Dev, OwnedTape<f32, Dev>>;

/// Mean over the batch of `-sum_c target_c * log_softmax(logits)_c`.
pub fn soft_cross_entropy(logits: Rows<OwnedTape<f32, Dev>>, targets: Rows<NoneTape>) -> Loss {
    cross_entropy_with_logits_loss(logits, targets)
}

/// Hinton's distillation term `T^2 * KL(softmax(teacher/T) || softmax(student/T))`, mean over
/// the batch; plugins (m2mKD) combine it with the task loss.
pub fn kl_distillation(
    student: Rows<OwnedTape<f32, Dev>>,
    teacher: Rows<NoneTape>,
    temperature: f32,
) -> Loss {
    let t = temperature;
    let teacher_probs = (teacher / t).softmax::<Axis<1>>();
    kl_div_with_logits_loss(student / t, teacher_probs) * (t * t)
}
