//! Each stage's recipe: its epochs, warmup and drop-path, and the clipping and schedule form
//! it may set over `[optim]`'s.

use super::OptimSection;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageRecipe {
    pub epochs: usize,
    /// Epochs of linear warmup, fractional allowed (rounded to whole optimizer steps): a
    /// schedule scaled down from the paper's keeps its warmup's share.
    pub warmup_epochs: f64,
    pub drop_path: f64,
    /// A budget in optimizer steps that replaces `epochs` (0: `epochs` whole epochs): the
    /// stage trains the whole epochs that fit and stops the next one early, and the schedule
    /// spans these steps. What an equal-compute baseline needs, whose budget is rarely a
    /// whole number of epochs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub steps: u64,
    /// This stage's gradient clipping: the global norm's bound, 0 for none; left out:
    /// `optim.clip_grad`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad: Option<f64>,
    /// This stage's learning-rate schedule; left out: `optim.schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleForm>,
}

impl StageRecipe {
    /// A recipe with the global clipping and schedule.
    pub fn new(epochs: usize, warmup_epochs: f64, drop_path: f64) -> StageRecipe {
        StageRecipe {
            epochs,
            warmup_epochs,
            drop_path,
            steps: 0,
            clip_grad: None,
            schedule: None,
        }
    }

    /// The clipping bound this stage trains with, `optim`'s unless it sets its own.
    pub fn clip_grad(&self, optim: &OptimSection) -> Option<f64> {
        match self.clip_grad {
            Some(c) if c == 0.0 => None,
            Some(c) => Some(c),
            None => optim.clip_grad,
        }
    }

    pub fn schedule(&self, optim: &OptimSection) -> ScheduleForm {
        self.schedule.unwrap_or(optim.schedule)
    }

    /// The optimizer steps this stage trains when an epoch has `steps_per_epoch` of them.
    pub fn total_steps(&self, steps_per_epoch: u64) -> u64 {
        match self.steps {
            0 => self.epochs as u64 * steps_per_epoch,
            n => n,
        }
    }

    /// The epochs it begins: the last one may stop early under a step budget.
    pub fn epochs_begun(&self, steps_per_epoch: u64) -> usize {
        self.total_steps(steps_per_epoch)
            .div_ceil(steps_per_epoch.max(1)) as usize
    }

    /// The warmup in optimizer steps.
    pub fn warmup_steps(&self, steps_per_epoch: u64) -> u64 {
        (self.warmup_epochs * steps_per_epoch as f64).round() as u64
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How the learning rate moves over a stage: both warm up linearly from `optim.warmup_lr` to
/// the peak and follow a cosine to `optim.min_lr`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleForm {
    /// Per optimizer step; the cosine spans the steps after the warmup, so the peak is
    /// reached at the warmup's end. Smooth at any number of epochs (the default: our short
    /// schedules have few epochs, where per-epoch steps are coarse).
    #[default]
    PerStep,
    /// timm's CosineLRScheduler as DeiT's main.py drives it (the reference's): one value per
    /// epoch, the cosine spanning all epochs from the first (the warmup included, so the
    /// peak is never reached exactly when warming up), set by `scheduler.step(epoch)` after
    /// each epoch, so epoch e trains at the value for max(e - 1, 0).
    Deit,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct E2eRecipe {
    pub enabled: bool,
    pub epochs: usize,
    pub warmup_epochs: f64,
    pub drop_path: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub steps: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleForm>,
}

impl E2eRecipe {
    pub fn recipe(&self) -> StageRecipe {
        StageRecipe {
            epochs: self.epochs,
            warmup_epochs: self.warmup_epochs,
            drop_path: self.drop_path,
            steps: self.steps,
            clip_grad: self.clip_grad,
            schedule: self.schedule,
        }
    }
}
