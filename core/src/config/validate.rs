//! Every check of a configuration that does not need the data, section by section, each
//! problem naming its key. Whatever passes here cannot panic in training; what depends on the
//! data (image size, class count, the split against the depth) is checked when the run opens.

use super::{ConfigError, RunConfig, SlurmResources, StageRecipe};

/// Collects problems, each as `key = value: what is wrong`.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, key: &str, value: impl std::fmt::Display, rule: &str) {
        if !ok {
            self.0.push(format!("{key} = {value} {rule}"));
        }
    }
    fn at_least_one(&mut self, key: &str, v: usize) {
        self.check(v >= 1, key, v, "must be at least 1");
    }
    /// Between 1 and `max`: bounds far beyond any real use, so that a typo (an extra 000)
    /// is named here instead of aborting an allocation or looping for years.
    fn between_one_and(&mut self, key: &str, v: usize, max: usize, why: &str) {
        self.check(
            (1..=max).contains(&v),
            key,
            v,
            &format!("must be between 1 and {max} ({why})"),
        );
    }
    fn finite_at_least(&mut self, key: &str, v: f64, min: f64) {
        self.check(
            v.is_finite() && v >= min,
            key,
            v,
            &format!("must be a number >= {min}"),
        );
    }
    fn positive(&mut self, key: &str, v: f64) {
        self.check(
            v.is_finite() && v > 0.0,
            key,
            v,
            "must be a positive number",
        );
    }
    fn fraction(&mut self, key: &str, v: f64) {
        self.check((0.0..=1.0).contains(&v), key, v, "must be between 0 and 1");
    }
    fn recipe(&mut self, section: &str, r: &StageRecipe, optim: &super::OptimSection) {
        let (epochs, warmup) = (r.epochs, r.warmup_epochs);
        self.between_one_and(
            &format!("{section}.epochs"),
            epochs,
            100_000,
            "DeiT trains 300, the paper's longest recipe 800",
        );
        let key = format!("{section}.warmup_epochs");
        self.finite_at_least(&key, warmup, 0.0);
        // Under a step budget the warmup is checked against it once the data gives the
        // steps per epoch.
        self.check(
            r.steps <= 1_000_000_000,
            &format!("{section}.steps"),
            r.steps,
            "must be at most 1000000000 (optimizer steps; 0: train by epochs)",
        );
        if r.steps == 0 {
            self.check(
                warmup <= epochs as f64,
                &key,
                warmup,
                &format!("must not exceed {section}.epochs = {epochs}"),
            );
        }
        self.check(
            r.schedule(optim) != super::ScheduleForm::Deit || warmup.fract() == 0.0,
            &key,
            warmup,
            "must be a whole number with schedule = \"deit\" (timm's schedule warms up per epoch); use the \"per-step\" schedule for a fractional warmup",
        );
        let drop_path = r.drop_path;
        self.check(
            (0.0..1.0).contains(&drop_path),
            &format!("{section}.drop_path"),
            drop_path,
            "must be in [0, 1) (the probability that a block is skipped)",
        );
    }
}

impl RunConfig {
    /// Checks that do not need the data: every section, the E2E recipe and the Slurm
    /// resources included.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        let m = &self.model;
        if crate::model::config::PRESETS
            .iter()
            .all(|p| p.name != m.preset)
        {
            let names: Vec<&str> = crate::model::config::PRESETS
                .iter()
                .map(|p| p.name)
                .collect();
            p.0.push(format!(
                "model.preset = {:?} is unknown; choose one of {}",
                m.preset,
                names.join(", ")
            ));
        }
        for (key, v, max, why) in [
            ("model.image_size", m.image_size, 8192, "pixels per side"),
            ("model.channels", m.channels, 64, "image channels"),
            ("model.patch_size", m.patch_size, 1024, "pixels per side"),
            ("model.embed_dim", m.embed_dim, 65_536, "ViT-22B's is 6144"),
            ("model.depth", m.depth, 1024, "ViT-22B has 48 blocks"),
            ("model.num_heads", m.num_heads, 4096, "ViT-22B has 48"),
            (
                "model.num_classes",
                m.num_classes,
                1_000_000,
                "ImageNet-21k has 21,843",
            ),
        ] {
            if let Some(v) = v {
                p.between_one_and(key, v, max, why);
            }
        }
        if let Some(r) = m.mlp_ratio {
            p.check(
                r.is_finite() && r > 0.0 && r <= 64.0,
                "model.mlp_ratio",
                r,
                "must be a positive number up to 64 (ViT's is 4)",
            );
        }
        if let Some(e) = m.norm_eps {
            p.positive("model.norm_eps", e);
        }

        let d = &self.data;
        p.check(
            d.train_fraction > 0.0 && d.train_fraction <= 1.0,
            "data.train_fraction",
            d.train_fraction,
            "must be in (0, 1] (1: the whole training set)",
        );
        let balanced = d.train_fraction < 1.0 || d.train_per_class > 0;
        p.check(
            !(d.train_fraction < 1.0 && d.train_per_class > 0),
            "data.train_per_class",
            d.train_per_class,
            "and data.train_fraction both choose a subset; set only one",
        );
        p.check(
            !(balanced && d.train_limit > 0),
            "data.train_limit",
            d.train_limit,
            "takes the first images, whatever their class; with a class-balanced subset (data.train_fraction or data.train_per_class) leave it 0",
        );

        p.check(
            (0.0..1.0).contains(&d.val_fraction),
            "data.val_fraction",
            d.val_fraction,
            "must be in [0, 1) (0: no validation split; 0.1: a tenth of every class)",
        );
        p.check(
            !(d.val_fraction > 0.0 && d.val_per_class > 0),
            "data.val_per_class",
            d.val_per_class,
            "and data.val_fraction both size the validation split; set only one (the other to 0)",
        );

        let grey = d.dataset.fixed_shape().is_some_and(|s| s.channels != 3);
        p.check(
            !(d.normalize == super::Normalization::Imagenet && grey),
            "data.normalize",
            "imagenet",
            "takes ImageNet's three channel statistics; this dataset's images are not RGB: use \"dataset\"",
        );

        let a = &self.augment;
        p.check(
            a.crop_padding <= 1024,
            "augment.crop_padding",
            a.crop_padding,
            "is larger than any image; use a few pixels (CIFAR recipe: 4)",
        );
        p.check(
            (0.0..1.0).contains(&a.label_smoothing),
            "augment.label_smoothing",
            a.label_smoothing,
            "must be in [0, 1)",
        );
        p.finite_at_least("augment.mixup_alpha", a.mixup_alpha, 0.0);
        p.finite_at_least("augment.cutmix_alpha", a.cutmix_alpha, 0.0);
        p.fraction("augment.mix_prob", a.mix_prob);
        p.fraction("augment.switch_prob", a.switch_prob);
        if !a.rand_augment.is_empty() {
            if let Err(e) = crate::data::folder::RandAugment::parse(&a.rand_augment) {
                p.0.push(format!("augment.rand_augment = {e}"));
            }
        }
        p.fraction("augment.reprob", a.reprob);
        let [s0, s1] = a.rrc_scale;
        p.check(
            s0 > 0.0 && s0 <= s1 && s1 <= 1.0,
            "augment.rrc_scale",
            format!("[{s0}, {s1}]"),
            "must be [low, high] with 0 < low <= high <= 1 (area fractions; DeiT: [0.08, 1])",
        );
        let [r0, r1] = a.rrc_ratio;
        p.check(
            r0 > 0.0 && r0 <= r1 && r1.is_finite(),
            "augment.rrc_ratio",
            format!("[{r0}, {r1}]"),
            "must be [low, high] with 0 < low <= high (aspect ratios; DeiT: [0.75, 1.3333])",
        );
        p.check(
            a.crop_pct > 0.0 && a.crop_pct <= 1.0,
            "augment.crop_pct",
            a.crop_pct,
            "must be in (0, 1] (DeiT: 0.875)",
        );
        p.between_one_and(
            "augment.repeated_augment",
            a.repeated_augment,
            64,
            "repeats of each image per epoch; DeiT uses 3",
        );
        p.between_one_and("data.image_size", d.image_size, 8192, "pixels per side");
        p.between_one_and("data.prefetch", d.prefetch, 1024, "batches per worker");
        p.at_least_one("data.max_image_pixels", d.max_image_pixels as usize);

        let o = &self.optim;
        p.between_one_and("optim.batch_size", o.batch_size, 1 << 20, "images per step");
        p.between_one_and(
            "optim.accum_steps",
            o.accum_steps,
            1 << 16,
            "batches per step",
        );
        p.positive("optim.base_lr", o.base_lr);
        p.finite_at_least("optim.min_lr", o.min_lr, 0.0);
        p.finite_at_least("optim.warmup_lr", o.warmup_lr, 0.0);
        p.finite_at_least("optim.weight_decay", o.weight_decay, 0.0);
        for (i, b) in o.betas.iter().enumerate() {
            p.check(
                (0.0..1.0).contains(b),
                &format!("optim.betas[{i}]"),
                b,
                "must be in [0, 1)",
            );
        }
        p.positive("optim.eps", o.eps);
        if let Some(c) = o.clip_grad {
            p.check(
                c.is_finite() && c > 0.0,
                "optim.clip_grad",
                c,
                "must be a positive number (leave the key out to disable clipping)",
            );
        }

        // The E2E recipe is checked even when disabled: enabling it later must not meet a
        // broken recipe.
        for (section, r) in [
            ("meta", self.meta),
            ("incubate", self.incubate),
            ("finetune", self.finetune),
            ("e2e", self.e2e.recipe()),
        ] {
            p.recipe(section, &r, o);
            if let Some(c) = r.clip_grad {
                p.check(
                    c.is_finite() && c >= 0.0,
                    &format!("{section}.clip_grad"),
                    c,
                    "must be a positive number, or 0 for no clipping in this stage (leave it out to use optim.clip_grad)",
                );
            }
        }

        for (key, name) in [
            ("plugins.meta_design", &self.plugins.meta_design),
            ("plugins.strategy", &self.plugins.strategy),
            ("plugins.assembly", &self.plugins.assembly),
        ] {
            p.check(
                !name.trim().is_empty(),
                key,
                format!("{name:?}"),
                "must name a plugin",
            );
        }

        let s = &self.slurm;
        for (key, r) in [
            ("default", &s.default),
            ("meta", &s.meta),
            ("incubate", &s.incubate),
            ("assemble", &s.assemble),
            ("e2e", &s.e2e),
        ] {
            if let Err(e) = r.check(key) {
                p.0.push(e.to_string());
            }
        }
        // what a stage's job asks for is its section over [slurm.default]
        for (key, r) in [
            ("meta", &s.meta),
            ("incubate", &s.incubate),
            ("assemble", &s.assemble),
            ("e2e", &s.e2e),
        ] {
            let job = r.over(&s.default);
            if job.gpus.is_some_and(|g| g > 0) && job.gpus_per_task.is_some() {
                p.0.push(SlurmProblem::GpusTwice(key.to_string()).to_string());
            }
        }

        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p.0.join("; ")))
        }
    }
}

/// A `[slurm.<key>]` value sbatch would reject or misread: the key, the value, the fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SlurmProblem {
    #[error("{0} = {1:?}: give a single word (no spaces, no '#')")]
    NotAWord(String, String),
    #[error("{0} = 0: must be at least 1 (or leave it out)")]
    Zero(String),
    #[error("{0} = {1:?}: use a number with an optional unit K, M, G or T (e.g. \"16G\")")]
    Mem(String, String),
    #[error(
        "{0} = {1:?}: use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. \"2:00:00\")"
    )]
    Time(String, String),
    #[error("{0}: {1:?} is not an sbatch option; write options like \"--qos=high\"")]
    Extra(String, String),
    #[error("{0}: {1:?} is not an srun option; write options like \"--mpi=pmi2\"")]
    SrunExtra(String, String),
    #[error("{0} = {1}: at most {2} processes train a stage together")]
    TooMany(String, u32, u32),
    #[error(
        "slurm.{0} asks for gpus (for the whole job) and gpus_per_task (for each of its \
         processes), one of them from [slurm.default]: give one of the two"
    )]
    GpusTwice(String),
}

/// Far beyond any cluster's job, so that a typo (an extra 000) is named here, not by sbatch
/// after the other jobs went in.
pub const MAX_TASKS_PER_STAGE: u32 = 65_536;

impl SlurmResources {
    /// What sbatch would reject or misread in `[slurm.<key>]`, naming the key and the fix.
    pub fn check(&self, key: &str) -> Result<(), SlurmProblem> {
        let at = |field: &str| format!("slurm.{key}.{field}");
        let word = |field: &str, v: &Option<String>| -> Result<(), SlurmProblem> {
            match v {
                Some(s) if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '#') => {
                    Err(SlurmProblem::NotAWord(at(field), s.clone()))
                }
                _ => Ok(()),
            }
        };
        word("partition", &self.partition)?;
        word("account", &self.account)?;
        for (field, v) in [
            ("nodes", self.nodes),
            ("cpus", self.cpus),
            ("tasks_per_stage", self.tasks_per_stage),
            ("gpus_per_task", self.gpus_per_task),
        ] {
            if v == Some(0) {
                return Err(SlurmProblem::Zero(at(field)));
            }
        }
        if let Some(mem) = &self.mem {
            let digits = mem.trim_end_matches(['K', 'M', 'G', 'T']);
            if digits.is_empty()
                || !digits.chars().all(|c| c.is_ascii_digit())
                || mem.len() - digits.len() > 1
            {
                return Err(SlurmProblem::Mem(at("mem"), mem.clone()));
            }
        }
        if let Some(time) = &self.time {
            if !valid_time(time) {
                return Err(SlurmProblem::Time(at("time"), time.clone()));
            }
        }
        for line in &self.extra {
            if !line.starts_with("--") || line.contains('\n') {
                return Err(SlurmProblem::Extra(at("extra"), line.clone()));
            }
        }
        for option in &self.srun_extra {
            if !option.starts_with("--") || option.contains(['\n', '\0']) {
                return Err(SlurmProblem::SrunExtra(at("srun_extra"), option.clone()));
            }
        }
        if let Some(n) = self.tasks_per_stage.filter(|&n| n > MAX_TASKS_PER_STAGE) {
            return Err(SlurmProblem::TooMany(
                at("tasks_per_stage"),
                n,
                MAX_TASKS_PER_STAGE,
            ));
        }
        Ok(())
    }
}

fn valid_time(t: &str) -> bool {
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let num = |s: &str| !s.is_empty() && s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit());
    if days.is_some_and(|d| !num(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    parts.len() <= 3 && parts.iter().all(|p| num(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        let cfg = RunConfig::from_toml(text, "c").unwrap();
        cfg.validate().unwrap_err().to_string()
    }

    #[test]
    fn the_e2e_recipe_is_checked_like_the_others() {
        let e = refused("[e2e]\ndrop_path = 1.5\n");
        assert!(e.contains("e2e.drop_path = 1.5"), "{e}");
        let e = refused("[e2e]\nepochs = 0\n");
        assert!(e.contains("e2e.epochs = 0"), "{e}");
        let e = refused("[e2e]\nenabled = false\nwarmup_epochs = 20\nepochs = 5\n");
        assert!(e.contains("e2e.warmup_epochs = 20"), "{e}");
    }

    #[test]
    fn numbers_that_would_poison_training_are_refused() {
        for (text, key) in [
            ("[optim]\nbase_lr = nan\n", "optim.base_lr"),
            ("[optim]\nbase_lr = inf\n", "optim.base_lr"),
            ("[optim]\nbetas = [0.9, 1.0]\n", "optim.betas[1]"),
            ("[optim]\neps = 0.0\n", "optim.eps"),
            ("[optim]\nweight_decay = -1.0\n", "optim.weight_decay"),
            ("[optim]\nclip_grad = inf\n", "optim.clip_grad"),
            ("[augment]\nmixup_alpha = -0.5\n", "augment.mixup_alpha"),
            (
                "[augment]\nlabel_smoothing = 1.0\n",
                "augment.label_smoothing",
            ),
            ("[model]\nmlp_ratio = 0.0\n", "model.mlp_ratio"),
            ("[model]\npreset = \"vit-gigantic\"\n", "model.preset"),
            ("[plugins]\nstrategy = \"\"\n", "plugins.strategy"),
        ] {
            let e = refused(text);
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn bad_slurm_resources_are_refused_with_the_key_and_the_fix() {
        let bad = |r: SlurmResources| r.check("incubate").unwrap_err().to_string();
        let e = bad(SlurmResources {
            time: Some("2 hours".into()),
            ..Default::default()
        });
        assert!(
            e.contains("slurm.incubate.time") && e.contains("HH:MM:SS"),
            "{e}"
        );
        let e = bad(SlurmResources {
            mem: Some("16GB".into()),
            ..Default::default()
        });
        assert!(e.contains("slurm.incubate.mem") && e.contains("16G"), "{e}");
        let e = bad(SlurmResources {
            partition: Some("gpu a100".into()),
            ..Default::default()
        });
        assert!(e.contains("single word"), "{e}");
        let e = bad(SlurmResources {
            cpus: Some(0),
            ..Default::default()
        });
        assert!(e.contains("at least 1"), "{e}");
        let e = bad(SlurmResources {
            extra: vec!["qos=high".into()],
            ..Default::default()
        });
        assert!(e.contains("--qos=high"), "{e}");
        for ok in ["30", "2:00:00", "1-12:00:00", "1-12", "45:00"] {
            let r = SlurmResources {
                time: Some(ok.into()),
                ..Default::default()
            };
            assert!(r.check("x").is_ok(), "{ok}");
        }
        let e = refused("[slurm.e2e]\ntime = \"soon\"\n");
        assert!(e.contains("slurm.e2e.time"), "{e}");
    }

    #[test]
    fn bad_rank_counts_and_srun_options_are_refused_with_the_key() {
        for (text, want) in [
            (
                "[slurm.incubate]\ntasks_per_stage = 0\n",
                "slurm.incubate.tasks_per_stage = 0: must be at least 1",
            ),
            (
                "[slurm.meta]\ngpus_per_task = 0\n",
                "slurm.meta.gpus_per_task = 0: must be at least 1",
            ),
            (
                "[slurm.default]\ntasks_per_stage = 4000000000\n",
                "slurm.default.tasks_per_stage = 4000000000: at most 65536",
            ),
            (
                "[slurm.e2e]\nsrun_extra = [\"mpi=pmi2\"]\n",
                "slurm.e2e.srun_extra: \"mpi=pmi2\" is not an srun option",
            ),
            (
                "[slurm.default]\ngpus = 1\n[slurm.incubate]\ngpus_per_task = 1\n",
                "slurm.incubate asks for gpus (for the whole job) and gpus_per_task",
            ),
            ("[slurm.default]\ntasks_per_stage = -2\n", "tasks_per_stage"),
        ] {
            let e = match RunConfig::from_toml(text, "c") {
                Ok(cfg) => cfg.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(want), "{text}: {e}");
        }
        let ok = RunConfig::from_toml(
            "[slurm.default]\ntasks_per_stage = 2\ngpus_per_task = 1\n[slurm.meta]\ntasks_per_stage = 1\n",
            "c",
        )
        .unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.slurm.meta.over(&ok.slurm.default).tasks(), 1);
        assert_eq!(ok.slurm.incubate.over(&ok.slurm.default).tasks(), 2);
    }
}
