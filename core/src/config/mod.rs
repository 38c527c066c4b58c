//! The run configuration: TOML with defaults for every field, presets for the model, and
//! errors that name the offending key by its path.

pub mod diff;
mod load;
mod recipe;
mod validate;

pub use recipe::{E2eRecipe, ScheduleForm, StageRecipe};

use crate::data::DatasetName;
use crate::model::VitConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub seed: u64,
    pub model: ModelSection,
    pub split: SplitSection,
    pub data: DataSection,
    pub augment: AugmentSection,
    pub optim: OptimSection,
    /// Phase PT: the meta model trained end to end.
    pub meta: StageRecipe,
    /// Phase MT: each target module trained inside the frozen meta model.
    pub incubate: StageRecipe,
    /// Phase FT: the stacked modules fine-tuned end to end.
    pub finetune: StageRecipe,
    /// The end-to-end baseline.
    pub e2e: E2eRecipe,
    pub plugins: PluginSection,
    /// When the resumable state is written besides after each epoch.
    pub checkpoint: CheckpointSection,
    /// Resources of the jobs `incubator slurm submit` writes, per stage over `default`.
    pub slurm: SlurmSection,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Also write the resumable state every N optimizer steps (0: only after each epoch). A
    /// stop by signal always writes it.
    pub every_steps: u64,
}

/// What one Slurm job asks for; unset fields fall back to `[slurm.default]`, then to the
/// cluster's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmResources {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub nodes: Option<u32>,
    pub cpus: Option<u32>,
    pub gpus: Option<u32>,
    /// Memory per node, as sbatch takes it: `16G`, `4000M`.
    pub mem: Option<String>,
    /// Time limit, as sbatch takes it: `30`, `2:00:00`, `1-12:00:00`.
    pub time: Option<String>,
    /// More `#SBATCH` options, e.g. `--constraint=a100` or `--qos=high`.
    pub extra: Vec<String>,
    /// Processes that train the stage together, as data-parallel ranks (`#SBATCH --ntasks`,
    /// started by `srun`; needs a build with `--features mpi`). Unset or 1: one process.
    pub tasks_per_stage: Option<u32>,
    /// GPUs for each of those processes (`#SBATCH --gpus-per-task`); each rank trains on one.
    pub gpus_per_task: Option<u32>,
    /// More `srun` options for the stage's processes. Without an `--mpi=` among them, the
    /// script passes `--mpi=pmix`: how Open MPI's ranks find each other under Slurm.
    pub srun_extra: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSection {
    /// The `incubator` binary as the compute nodes see it (default: this one's absolute path;
    /// the run directory and the binary must be on a filesystem every node shares).
    pub binary: Option<PathBuf>,
    pub default: SlurmResources,
    pub meta: SlurmResources,
    pub incubate: SlurmResources,
    pub assemble: SlurmResources,
    pub e2e: SlurmResources,
}

impl SlurmResources {
    /// The processes (ranks) that train the stage.
    pub fn tasks(&self) -> u32 {
        self.tasks_per_stage.unwrap_or(1)
    }

    /// `self` with unset fields taken from `base`; `extra` lines of both.
    pub fn over(&self, base: &SlurmResources) -> SlurmResources {
        SlurmResources {
            partition: self.partition.clone().or_else(|| base.partition.clone()),
            account: self.account.clone().or_else(|| base.account.clone()),
            nodes: self.nodes.or(base.nodes),
            cpus: self.cpus.or(base.cpus),
            gpus: self.gpus.or(base.gpus),
            mem: self.mem.clone().or_else(|| base.mem.clone()),
            time: self.time.clone().or_else(|| base.time.clone()),
            extra: base.extra.iter().chain(&self.extra).cloned().collect(),
            tasks_per_stage: self.tasks_per_stage.or(base.tasks_per_stage),
            gpus_per_task: self.gpus_per_task.or(base.gpus_per_task),
            srun_extra: base
                .srun_extra
                .iter()
                .chain(&self.srun_extra)
                .cloned()
                .collect(),
        }
    }
}

/// The model: a preset's width and depth, with any field overridden. Image geometry and class
/// count come from the dataset unless set here.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    pub preset: String,
    pub image_size: Option<usize>,
    pub channels: Option<usize>,
    pub patch_size: Option<usize>,
    pub embed_dim: Option<usize>,
    pub depth: Option<usize>,
    pub num_heads: Option<usize>,
    pub mlp_ratio: Option<f64>,
    pub qkv_bias: Option<bool>,
    pub norm_eps: Option<f64>,
    pub num_classes: Option<usize>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSection {
    /// Blocks per target module; K = its length. Empty: `depth / 4` blocks in each of 4 modules.
    pub divided_depths: Vec<usize>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    pub dataset: DatasetName,
    /// Directory with the dataset's files (IDX or CIFAR binary). Default: the fetch cache.
    pub path: Option<PathBuf>,
    /// Where `incubator data fetch` puts datasets. Default: `$INCUBATOR_DATA` or `~/.cache/incubator`.
    pub cache_dir: Option<PathBuf>,
    /// Use only the first N training / test images (0: all); an image folder, ordered by
    /// class, draws N at random with `subset_seed` instead.
    pub train_limit: usize,
    pub test_limit: usize,
    /// A class-balanced training subset: this fraction of every class (1: all), as the paper's
    /// data-efficiency study uses. Drawn with `subset_seed`; a smaller fraction is a subset
    /// of a larger one.
    pub train_fraction: f64,
    /// A class-balanced training subset of this many images per class (0: all).
    pub train_per_class: usize,
    /// The seed of the class-balanced subset and of the validation hold-out (not the run's
    /// seed, so that runs with several seeds train and validate on the same images).
    pub subset_seed: u64,
    /// A class-balanced validation split held out of the training images (after
    /// `train_limit`, before `train_fraction` / `train_per_class`, so that training subsets of
    /// any size are validated on the same images): this fraction of every class. Per-epoch
    /// evaluation and the best epoch then use it, and the test split is evaluated once, at the
    /// end of each stage. 0: none (every epoch is evaluated on the test split).
    pub val_fraction: f64,
    /// Or this many images of every class (0: use `val_fraction`).
    pub val_per_class: usize,
    /// The mean and standard deviation images are normalised with: the dataset's own
    /// ("dataset"), or ImageNet's ("imagenet", which DeiT's code, the reference's, uses for
    /// every dataset, CIFAR included; 3-channel images only).
    pub normalize: Normalization,
    /// Image folders (`dataset = "folder"`): the side of the square crops the model takes.
    pub image_size: usize,
    /// Image folders: decoding threads (default: the machine's cores; 0 decodes on the
    /// training thread).
    pub workers: Option<usize>,
    /// Image folders: batches decoded ahead per worker (torchvision's `prefetch_factor`); the
    /// loader holds at most workers x prefetch batches.
    pub prefetch: usize,
    /// Image folders: an image declaring more pixels than this is not decoded (a
    /// decompression bomb: a few hundred KB of PNG can declare gigabytes), but skipped and
    /// counted like an unreadable one. Pillow's `MAX_IMAGE_PIXELS` by default.
    pub max_image_pixels: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSection {
    /// Random crop after zero padding by this many pixels (CIFAR recipe: 4). 0: off (default).
    pub crop_padding: usize,
    pub hflip: bool,
    pub label_smoothing: f64,
    /// Mixup Beta(alpha, alpha); 0: off.
    pub mixup_alpha: f64,
    /// CutMix Beta(alpha, alpha); 0: off.
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed at all. DeiT uses 1.0; the default 0 leaves mixing off,
    /// because the demo's few-epoch schedules on 6000 images lose accuracy with it.
    pub mix_prob: f64,
    /// When both are on, probability of CutMix instead of Mixup.
    pub switch_prob: f64,
    /// Image folders only (the in-memory datasets keep crop_padding and hflip): timm's
    /// RandAugment spec ("" for none), the DeiT default.
    pub rand_augment: String,
    /// Image folders (and in-memory sets with `rand_augment_in_memory`): probability of random
    /// erasing (one box of normal noise).
    pub reprob: f64,
    /// Also apply `rand_augment` and `reprob` to the in-memory datasets (MNIST, Fashion-MNIST,
    /// CIFAR), after the crop and flip: DeiT's CIFAR pipeline, which the reference trains with.
    /// Off by default: a run made before the key existed must train as it did, and the demo's
    /// short schedules were never tried with it.
    pub rand_augment_in_memory: bool,
    /// Image folders: RandomResizedCrop's area fraction and aspect-ratio ranges.
    pub rrc_scale: [f64; 2],
    pub rrc_ratio: [f64; 2],
    /// Image folders: evaluation resizes the shorter side to image_size / crop_pct, then crops
    /// the centre.
    pub crop_pct: f64,
    /// Repeated augmentation (DeiT: 3): each image of an epoch's shuffle this many times in a
    /// row, augmented differently, the epoch as long as before. 1: off.
    pub repeated_augment: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = batch_size * accum_steps).
    pub accum_steps: usize,
    /// Learning rate per 512 samples of effective batch (DeiT's linear scaling rule).
    pub base_lr: f64,
    pub min_lr: f64,
    pub warmup_lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    /// Clip the global gradient norm to this value; none: no clipping. A stage's own
    /// `clip_grad` overrides it (0 there: none).
    pub clip_grad: Option<f64>,
    /// The learning-rate schedule's form ("per-step" or "deit"); a stage's own `schedule`
    /// overrides it.
    pub schedule: ScheduleForm,
    /// Decay module 0's position embedding and class token while it incubates, as the
    /// reference does (its incubation optimizer is built on the bare module, so timm's
    /// no-decay list is empty). Off: DeiT's rule in every stage (no decay on them).
    pub incubation_decays_embeddings: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSection {
    pub meta_design: String,
    pub strategy: String,
    pub assembly: String,
    /// Plugin libraries (files or directories of them) to load, besides the built-ins.
    /// Relative paths are relative to the config file; the run directory stores them absolute.
    pub libraries: Vec<PathBuf>,
    /// Register the built-in plugins (`deep-incubation`). Off: only the libraries' plugins.
    pub builtins: bool,
    /// Settings for plugins, which read them by name (e.g. `alpha` for m2mKD).
    pub options: toml::Table,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 0,
            model: ModelSection::default(),
            split: SplitSection::default(),
            data: DataSection::default(),
            augment: AugmentSection::default(),
            optim: OptimSection::default(),
            meta: StageRecipe::new(4, 1.0, 0.0),
            incubate: StageRecipe::new(3, 1.0, 0.0),
            finetune: StageRecipe::new(2, 0.0, 0.0),
            e2e: E2eRecipe {
                enabled: true,
                epochs: 10,
                warmup_epochs: 1.0,
                drop_path: 0.0,
                steps: 0,
                clip_grad: None,
                schedule: None,
            },
            plugins: PluginSection::default(),
            checkpoint: CheckpointSection::default(),
            slurm: SlurmSection::default(),
        }
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            preset: "mnist-small".into(),
            image_size: None,
            channels: None,
            patch_size: None,
            embed_dim: None,
            depth: None,
            num_heads: None,
            mlp_ratio: None,
            qkv_bias: None,
            norm_eps: None,
            num_classes: None,
        }
    }
}

impl Default for SplitSection {
    fn default() -> Self {
        SplitSection {
            divided_depths: Vec::new(),
        }
    }
}

/// Which per-channel mean and standard deviation normalise the images.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// The dataset's own statistics (image folders: ImageNet's).
    #[default]
    Dataset,
    /// ImageNet's, whatever the dataset.
    Imagenet,
}

/// The validation hold-out of a new run: a tenth of every class.
pub const DEFAULT_VAL_FRACTION: f64 = 0.1;

impl DataSection {
    /// Whether the run holds a validation split out of its training images.
    pub fn has_val(&self) -> bool {
        self.val_fraction > 0.0 || self.val_per_class > 0
    }
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            dataset: DatasetName::EmbeddedMnist,
            path: None,
            cache_dir: None,
            train_limit: 0,
            test_limit: 0,
            train_fraction: 1.0,
            train_per_class: 0,
            subset_seed: 0,
            // Nothing is chosen on the test set unless a user turns this off (README,
            // "Validation split").
            val_fraction: DEFAULT_VAL_FRACTION,
            val_per_class: 0,
            normalize: Normalization::Dataset,
            image_size: 224,
            workers: None,
            prefetch: 2,
            max_image_pixels: 89_478_485,
        }
    }
}

impl Default for AugmentSection {
    fn default() -> Self {
        AugmentSection {
            crop_padding: 0,
            hflip: false,
            label_smoothing: 0.1,
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            mix_prob: 0.0,
            switch_prob: 0.5,
            rand_augment: "rand-m9-mstd0.5-inc1".into(),
            reprob: 0.25,
            rand_augment_in_memory: false,
            rrc_scale: [0.08, 1.0],
            rrc_ratio: [3.0 / 4.0, 4.0 / 3.0],
            crop_pct: 0.875,
            repeated_augment: 1,
        }
    }
}

impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            batch_size: 32,
            accum_steps: 1,
            base_lr: 0.032,
            min_lr: 1e-5,
            warmup_lr: 1e-6,
            weight_decay: 0.05,
            betas: [0.9, 0.999],
            eps: 1e-8,
            clip_grad: Some(1.0),
            schedule: ScheduleForm::PerStep,
            incubation_decays_embeddings: false,
        }
    }
}

impl Default for PluginSection {
    fn default() -> Self {
        PluginSection {
            meta_design: "deep-incubation".into(),
            strategy: "deep-incubation".into(),
            assembly: "deep-incubation".into(),
            libraries: Vec::new(),
            builtins: true,
            options: toml::Table::new(),
        }
    }
}

/// A configuration that could not be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

impl RunConfig {
    /// The model shape for a dataset with this geometry.
    pub fn vit(
        &self,
        image_size: usize,
        channels: usize,
        num_classes: usize,
    ) -> Result<VitConfig, ConfigError> {
        let m = &self.model;
        let data_geometry = (image_size, channels);
        let image_size = m.image_size.unwrap_or(image_size);
        let mut v = VitConfig::preset(
            &m.preset,
            image_size,
            m.channels.unwrap_or(channels),
            m.patch_size,
            m.num_classes.unwrap_or(num_classes),
        )
        .ok_or_else(|| {
            let names: Vec<&str> = crate::model::config::PRESETS
                .iter()
                .map(|p| p.name)
                .collect();
            ConfigError::Invalid(format!(
                "model.preset = {:?} is unknown; choose one of {}",
                m.preset,
                names.join(", ")
            ))
        })?;
        v.embed_dim = m.embed_dim.unwrap_or(v.embed_dim);
        v.depth = m.depth.unwrap_or(v.depth);
        v.num_heads = m.num_heads.unwrap_or(v.num_heads);
        v.mlp_ratio = m.mlp_ratio.unwrap_or(v.mlp_ratio);
        v.qkv_bias = m.qkv_bias.unwrap_or(v.qkv_bias);
        v.norm_eps = m.norm_eps.unwrap_or(v.norm_eps);
        let problems = v.problems();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems.join("; ")));
        }
        // The overrides only restate the data; anything else cannot be fed to the model.
        let (data_size, data_channels) = (data_geometry.0, data_geometry.1);
        if v.image_size != data_size {
            let fix = if self.data.dataset == DatasetName::Folder {
                "an image folder is cropped to data.image_size: set that instead"
            } else {
                "remove the override"
            };
            return Err(ConfigError::Invalid(format!(
                "model.image_size = {} but the dataset has {data_size}x{data_size} images; {fix}",
                v.image_size
            )));
        }
        if v.channels != data_channels {
            return Err(ConfigError::Invalid(format!(
                "model.channels = {} but the dataset's images have {data_channels}; remove the override",
                v.channels
            )));
        }
        if v.num_classes < num_classes {
            return Err(ConfigError::Invalid(format!(
                "model.num_classes = {} but the dataset has {num_classes} classes; remove the override or make it at least {num_classes}",
                v.num_classes
            )));
        }
        Ok(v)
    }

    pub fn cache_dir(&self) -> PathBuf {
        if let Some(d) = &self.data.cache_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("INCUBATOR_DATA") {
            return d.into();
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| ".".into());
        home.join(".cache").join("incubator")
    }
}

pub use crate::model::config::default_patch_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = RunConfig::default();
        assert_eq!(RunConfig::from_toml(&c.to_toml(), "x").unwrap(), c);
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let e = RunConfig::from_toml("[optim]\nbatch_sise = 3\n", "cfg.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("optim.batch_sise"), "{e}");
        assert!(e.contains("cfg.toml"), "{e}");
        assert!(e.contains("unknown key"), "{e}");
    }

    #[test]
    fn bad_value_is_named_with_its_path() {
        let e = RunConfig::from_toml("[meta]\nepochs = \"many\"\n", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("meta.epochs"), "{e}");
        let e = RunConfig::from_toml("[data]\ndataset = \"imagenet\"\n", "c")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.dataset") && e.contains("embedded-mnist"),
            "{e}"
        );
    }

    #[test]
    fn partial_config_keeps_defaults() {
        let c = RunConfig::from_toml(
            "seed = 7\n[model]\nembed_dim = 32\n[incubate]\nepochs = 9\n",
            "c",
        )
        .unwrap();
        assert_eq!(c.incubate.epochs, 9);
        assert_eq!(
            c.incubate.drop_path,
            RunConfig::default().incubate.drop_path
        );
        assert_eq!(c.seed, 7);
        assert_eq!(c.optim, OptimSection::default());
        let v = c.vit(28, 1, 10).unwrap();
        assert_eq!(
            (v.embed_dim, v.depth, v.patch_size, v.tokens()),
            (32, 8, 7, 17)
        );
        assert_eq!(c.vit(32, 3, 100).unwrap().patch_size, 4);
        assert_eq!(c.vit(224, 3, 1000).unwrap().patch_size, 16);
    }

    #[test]
    fn impossible_model_is_refused() {
        let c = RunConfig::from_toml("[model]\nnum_heads = 5\n", "c").unwrap();
        let e = c.vit(28, 1, 10).unwrap_err().to_string();
        assert!(
            e.contains("num_heads = 5") && e.contains("embed_dim = 64"),
            "{e}"
        );
        let c = RunConfig::from_toml("[model]\npatch_size = 5\n", "c").unwrap();
        assert!(c.vit(28, 1, 10).unwrap_err().to_string().contains("divide"));
        // ViT-H/14 on CIFAR's 32 px: its patch does not divide the image; the error says so
        let c = RunConfig::from_toml("[model]\npreset = \"vit-huge\"\n", "c").unwrap();
        let e = c.vit(32, 3, 100).unwrap_err().to_string();
        assert!(
            e.contains("patch_size = 14") && e.contains("image_size = 32"),
            "{e}"
        );
        let h = c.vit(224, 3, 1000).unwrap();
        assert_eq!((h.patch_size, h.qkv_bias, h.norm_eps), (14, false, 1e-5));
    }
}
