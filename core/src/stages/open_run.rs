//! What a run is: its directory, configuration, model shape, split into modules and plugin
//! registry. Opening one reads the config and loads the plugins, nothing else: no dataset is
//! read and no device is made until something asks for one, so commands that only read a run
//! (`incubator report`, `incubator slurm submit`) cost what the run's files cost.

use super::plan::StagePlan;
use crate::config::RunConfig;
use crate::data::folder::{folder_shape, list_classes};
use crate::data::DatasetName;
use crate::device::{new_device, Dev};
use crate::model::{Init, VitConfig};
use crate::plugin::{PluginContext, Registrar, Registry};
use crate::run_dir::{OpenMode, RunDir};
use crate::split::Split;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

pub use crate::run_dir::CLASSES_FILE;

/// The images the model is for, the model and its split into modules, as `cfg` makes them of
/// its dataset (`classes`: an image folder's).
fn model_of(
    cfg: &RunConfig,
    classes: Option<&[String]>,
) -> anyhow::Result<(crate::data::ImageShape, VitConfig, Split)> {
    let shape = match (cfg.data.dataset.fixed_shape(), classes) {
        (Some(shape), _) => shape,
        (None, Some(classes)) => folder_shape(classes.len(), cfg.data.image_size),
        (None, None) => unreachable!("folder_classes lists a folder's classes"),
    };
    if shape.height != shape.width {
        anyhow::bail!(
            "dataset {} has {}x{} images; only square images are supported",
            cfg.data.dataset,
            shape.height,
            shape.width
        );
    }
    let vit = cfg.vit(shape.height, shape.channels, shape.num_classes)?;
    let split = Split::resolve(cfg, &vit)?;
    Ok((shape, vit, split))
}

/// The classes of `cfg`'s image folder; `None` for the other datasets.
fn folder_classes(cfg: &RunConfig) -> anyhow::Result<Option<Vec<String>>> {
    if cfg.data.dataset != DatasetName::Folder {
        return Ok(None);
    }
    let Some(root) = &cfg.data.path else {
        anyhow::bail!("data.dataset = \"folder\" needs data.path: the directory that holds train/<class>/ and val/<class>/ (the ImageNet layout)");
    };
    Ok(Some(list_classes(root).map_err(|e| {
        anyhow::Error::new(e).context("cannot list the classes of data.path")
    })?))
}

/// The plugins' option values as they will read them (ranges, choices, their own checks
/// against the model and recipe): refused here, before the first stage trains, not when the
/// plugin's stage starts.
fn check_values(
    registry: &Registry,
    cfg: &RunConfig,
    vit: &VitConfig,
    split: &Split,
) -> anyhow::Result<()> {
    Ok(registry.check_values(&PluginContext { vit, split, cfg })?)
}

/// The plugins' values checked, then the stages planned: both refused before anything is
/// recorded or trained.
fn check_and_plan(
    registry: &Registry,
    cfg: &RunConfig,
    vit: &VitConfig,
    split: &Split,
) -> anyhow::Result<StagePlan> {
    check_values(registry, cfg, vit, split)?;
    super::plan::of(registry, &PluginContext { vit, split, cfg })
}

/// Where a process's plugins come from besides the run's config.
pub struct PluginSources<'a> {
    /// Registers the plugins compiled into the binary.
    pub builtins: &'a dyn Fn(&mut Registrar),
    /// Libraries named on the command line (`--plugin`).
    pub extra: Vec<std::path::PathBuf>,
}

pub struct OpenRun {
    devices: std::sync::Mutex<std::collections::HashMap<std::thread::ThreadId, Dev>>,
    pub registry: Registry,
    pub run: RunDir,
    pub cfg: RunConfig,
    /// The model, shaped for the dataset's images as its name says they are.
    pub vit: VitConfig,
    pub split: Split,
    /// An image folder's classes as the run recorded them when it was made (`classes.json`).
    pub classes: Option<Vec<String>>,
    /// The images and classes the model is for.
    pub shape: crate::data::ImageShape,
    /// Its stages and what each needs.
    pub plan: StagePlan,
}

impl OpenRun {
    /// Opens the run directory (creating it with `cfg` where `mode` allows) and its plugins.
    pub fn open(
        root: &Path,
        cfg: Option<&RunConfig>,
        mode: OpenMode,
        plugins: &PluginSources,
    ) -> anyhow::Result<OpenRun> {
        let registry_of = |cfg: &RunConfig| -> anyhow::Result<Registry> {
            let (registry, _) = Registry::for_run(&cfg.plugins, plugins.builtins, &plugins.extra)?;
            registry.check_selection(&cfg.plugins)?;
            Ok(registry)
        };
        let opening = RunDir::plan(root, cfg, mode)?;
        // A configuration about to be recorded is checked first (its plugins, its folder's
        // classes, the model it makes of the data), so that a refused one leaves nothing
        // behind.
        let recorded = root.join(CLASSES_FILE);
        let records = opening.records();
        let (checked, listed) = if records {
            let c = opening.cfg();
            let registry = registry_of(c)?;
            let listed = folder_classes(c)?;
            let (_, vit, split) = model_of(c, listed.as_deref())?;
            let plan = check_and_plan(&registry, c, &vit, &split)?;
            (Some((registry, plan)), listed)
        } else {
            (None, None)
        };
        let (run, cfg) = opening.commit()?;
        let (registry, planned) = match checked {
            Some((r, plan)) => (r, Some(plan)),
            None => (registry_of(&cfg)?, None),
        };
        let classes = if listed.is_none() && recorded.is_file() {
            let text = fs_err::read_to_string(&recorded)?;
            Some(serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
                anyhow::anyhow!("{} is not a list of class names ({e}); it records the classes of the run's image folder: restore it, or delete it to list them again from data.path", recorded.display())
            })?)
        } else {
            let classes = match listed {
                Some(c) => Some(c),
                None => folder_classes(&cfg)?,
            };
            if let Some(c) = &classes {
                crate::checkpoint::write_atomic(
                    &recorded,
                    serde_json::to_string_pretty(c)?.as_bytes(),
                )?;
            }
            classes
        };
        let (shape, vit, split) = model_of(&cfg, classes.as_deref())?;
        let plan = match planned {
            Some(plan) => plan,
            None => check_and_plan(&registry, &cfg, &vit, &split)?,
        };
        Ok(OpenRun {
            devices: Default::default(),
            registry,
            run,
            cfg,
            vit,
            split,
            classes,
            shape,
            plan,
        })
    }

    pub fn plugin_ctx(&self) -> PluginContext<'_> {
        PluginContext {
            vit: &self.vit,
            split: &self.split,
            cfg: &self.cfg,
        }
    }

    /// A seeded initialiser for one purpose (`"meta"`, `"incubate-2"`, `"e2e"`): each stage's
    /// random weights depend only on the run seed and the stage, whichever process makes them.
    pub fn init_rng(&self, purpose: &str) -> ChaCha8Rng {
        let mut h: u64 = 0x9e3779b97f4a7c15 ^ self.cfg.seed;
        for b in purpose.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        ChaCha8Rng::seed_from_u64(h)
    }

    /// This thread's device. Each stage thread computes on its own: dfdx 0.13's allocation
    /// cache is not safe to share between threads (a buffer can be taken twice between its
    /// read and write locks, which panics), and tensors never cross stages anyway.
    pub fn dev(&self) -> Dev {
        let mut devices = self.devices.lock().expect("no panics while holding it");
        devices
            .entry(std::thread::current().id())
            .or_insert_with(|| new_device(self.cfg.seed))
            .clone()
    }

    /// A seeded initialiser on `dev` (see [`OpenRun::init_rng`]).
    pub fn init<'a>(&self, dev: &'a Dev, rng: &'a mut ChaCha8Rng) -> Init<'a> {
        Init { dev, rng }
    }
}
