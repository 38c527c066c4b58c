//! Each stage's recipe: its epochs, warmup and drop-path, and the clipping and schedule form
//! it may set over `[optim]`'s.

use super::OptimSection;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageRecipe {
    pub epochs: usize,
    pub warmup_epochs: usize,
    pub drop_path: f64,
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
    pub fn new(epochs: usize, warmup_epochs: usize, drop_path: f64) -> StageRecipe {
        StageRecipe {
            epochs,
            warmup_epochs,
            drop_path,
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
    pub warmup_epochs: usize,
    pub drop_path: f64,
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
            clip_grad: self.clip_grad,
            schedule: self.schedule,
        }
    }
}
