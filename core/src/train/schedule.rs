//! Learning rate per optimizer step: linear warmup from `warmup_lr`, then cosine to `min_lr`,
//! in one of two forms ([`ScheduleForm`]): ours per step, or timm's per epoch as DeiT runs it.

pub use crate::config::ScheduleForm;

#[derive(Clone, Debug)]
pub struct CosineSchedule {
    pub form: ScheduleForm,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_lr: f64,
    pub warmup_steps: u64,
    /// The stage's length: whole epochs, or a step budget whose last epoch stops early.
    pub total_steps: u64,
    pub steps_per_epoch: u64,
}

impl CosineSchedule {
    pub fn lr(&self, step: u64) -> f64 {
        match self.form {
            ScheduleForm::PerStep => self.per_step(step),
            ScheduleForm::Deit => {
                // scheduler.step(epoch) runs after each epoch: epoch e trains at t = e - 1
                let epoch = step / self.steps_per_epoch.max(1);
                self.timm(epoch.saturating_sub(1))
            }
        }
    }

    fn per_step(&self, step: u64) -> f64 {
        let warmup_steps = self.warmup_steps;
        if step < warmup_steps {
            let frac = step as f64 / warmup_steps as f64;
            return self.warmup_lr + (self.peak_lr - self.warmup_lr) * frac;
        }
        let decay_steps = self.total_steps.saturating_sub(warmup_steps).max(1);
        let t = ((step - warmup_steps) as f64 / decay_steps as f64).min(1.0);
        self.cosine(t)
    }

    /// timm's CosineLRScheduler at epoch `t` (t_initial = the epochs begun, warmup_t =
    /// warmup epochs, whole here (checked with the config), warmup_prefix off, one cycle).
    fn timm(&self, t: u64) -> f64 {
        let spe = self.steps_per_epoch.max(1);
        let warmup_epochs = self.warmup_steps / spe;
        if t < warmup_epochs {
            let per_epoch = (self.peak_lr - self.warmup_lr) / warmup_epochs as f64;
            return self.warmup_lr + t as f64 * per_epoch;
        }
        let epochs = self.total_steps.div_ceil(spe);
        let t = (t as f64 / epochs.max(1) as f64).min(1.0);
        self.cosine(t)
    }

    fn cosine(&self, t: f64) -> f64 {
        self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(form: ScheduleForm) -> CosineSchedule {
        CosineSchedule {
            form,
            peak_lr: 1.0,
            min_lr: 0.1,
            warmup_lr: 0.0,
            warmup_steps: 10,
            total_steps: 60,
            steps_per_epoch: 5,
        }
    }

    #[test]
    fn per_step_warms_up_then_spans_the_rest_with_the_cosine() {
        let s = schedule(ScheduleForm::PerStep);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(35) - 0.55).abs() < 1e-12);
        assert!((s.lr(60) - 0.1).abs() < 1e-12);
        let no_warmup = CosineSchedule {
            warmup_steps: 0,
            ..s
        };
        assert!((no_warmup.lr(0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_step_budget_ends_the_cosine_at_its_last_step_and_a_fractional_warmup_counts_steps() {
        // 23 steps of 5 per epoch (4.6 epochs), warmup 0.6 epochs = 3 steps.
        let recipe = crate::config::StageRecipe {
            steps: 23,
            ..crate::config::StageRecipe::new(12, 0.6, 0.0)
        };
        assert_eq!(recipe.total_steps(5), 23);
        assert_eq!(recipe.epochs_begun(5), 5);
        assert_eq!(recipe.warmup_steps(5), 3);
        let s = CosineSchedule {
            warmup_steps: recipe.warmup_steps(5),
            total_steps: recipe.total_steps(5),
            ..schedule(ScheduleForm::PerStep)
        };
        assert!((s.lr(1) - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.lr(3) - 1.0).abs() < 1e-12);
        // halfway through the 20 decay steps: the cosine's midpoint
        assert!((s.lr(13) - 0.55).abs() < 1e-12);
        assert!((s.lr(23) - 0.1).abs() < 1e-12);
        let whole = crate::config::StageRecipe::new(12, 2.0, 0.0);
        assert_eq!((whole.total_steps(5), whole.epochs_begun(5)), (60, 12));
    }

    #[test]
    fn deit_form_is_timms_per_epoch_values_one_epoch_late() {
        let s = schedule(ScheduleForm::Deit);
        // timm: t=0 -> 0 (warmup start), t=1 -> 0.5, t>=2 -> cosine over t/12
        let timm = |t: f64| 0.1 + 0.45 * (1.0 + (std::f64::consts::PI * t / 12.0).cos());
        for step in 0..10 {
            assert_eq!(
                s.lr(step),
                0.0,
                "epochs 0 and 1 both train at t=0 (step {step})"
            );
        }
        for step in 10..15 {
            assert!((s.lr(step) - 0.5).abs() < 1e-12, "epoch 2 at t=1");
        }
        assert!(
            (s.lr(15) - timm(2.0)).abs() < 1e-12,
            "epoch 3 at t=2: below the peak"
        );
        assert!(s.lr(15) < 1.0);
        assert!(
            (s.lr(59) - timm(10.0)).abs() < 1e-12,
            "the last epoch at t=10"
        );
        let finetune = CosineSchedule {
            warmup_steps: 0,
            ..s
        };
        assert_eq!(finetune.lr(0), 1.0);
        assert_eq!(finetune.lr(9), 1.0, "epoch 1 repeats t=0");
    }
}
