//! Learning rate per optimizer step: linear warmup from `warmup_lr`, then cosine to `min_lr`
//! (timm's CosineLRScheduler as DeiT configures it, evaluated per step instead of per epoch).

#[derive(Clone, Debug)]
pub struct CosineSchedule {
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl CosineSchedule {
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            let frac = step as f64 / self.warmup_steps as f64;
            return self.warmup_lr + (self.peak_lr - self.warmup_lr) * frac;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = CosineSchedule {
            peak_lr: 1.0,
            min_lr: 0.1,
            warmup_lr: 0.0,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.55).abs() < 1e-12);
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
        let no_warmup = CosineSchedule {
            warmup_steps: 0,
            ..s
        };
        assert!((no_warmup.lr(0) - 1.0).abs() < 1e-12);
    }
}
