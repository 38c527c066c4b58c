//! What a run's stages will need in memory, estimated from the configuration alone before any
//! stage starts, so that a model or batch this machine cannot hold is refused at once with the
//! numbers, instead of aborting on an allocation hours into the run.
//!
//! Per stage: the parameters (and, for what trains, their gradients and AdamW's two moments),
//! the activations the backward pass keeps for a batch, and the folder loader's decoded
//! batches in flight. The activation term was fitted to the peak resident memory of real
//! E2E runs here (two ViTs, two batch sizes each: the estimate's slope per image came within
//! -14% and +1% of the measured one), so the estimate errs low: it refuses what surely cannot
//! fit, never a run that can.

use super::OpenRun;
use crate::events::StageId;
use crate::model::VitConfig;

/// Bytes, by what they hold.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    pub parameters: f64,
    pub optimizer: f64,
    pub activations: f64,
    pub loader: f64,
}

impl Estimate {
    pub fn total(&self) -> f64 {
        self.parameters + self.optimizer + self.activations + self.loader
    }

    fn plus(self, o: Estimate) -> Estimate {
        Estimate {
            parameters: self.parameters + o.parameters,
            optimizer: self.optimizer + o.optimizer,
            activations: self.activations + o.activations,
            loader: self.loader + o.loader,
        }
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (parameters {}, gradients and optimizer moments {}, activations {}, loader {})",
            gib(self.total()),
            gib(self.parameters),
            gib(self.optimizer),
            gib(self.activations),
            gib(self.loader)
        )
    }
}

pub fn gib(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", bytes / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.0} MiB", bytes / (1024.0 * 1024.0))
    }
}

const F32: f64 = 4.0;

/// Parameters of one transformer block.
fn block_params(v: &VitConfig) -> f64 {
    let (d, h) = (v.embed_dim as f64, v.mlp_hidden() as f64);
    4.0 * d * d + 2.0 * d * h + 9.0 * d + h
}

/// Parameters of the stem and the head (with the final norm).
fn ends_params(v: &VitConfig) -> f64 {
    let d = v.embed_dim as f64;
    (v.patch_dim() as f64 + 1.0) * d
        + d
        + v.tokens() as f64 * d
        + (d + 1.0) * v.num_classes as f64
        + 2.0 * d
}

/// Floats one image keeps for the backward pass in one block (the fitted form of: the
/// normalised inputs, queries/keys/values, attention weights, MLP hidden layer and residuals).
fn block_activations(v: &VitConfig) -> f64 {
    let (t, d, h) = (v.tokens() as f64, v.embed_dim as f64, v.mlp_hidden() as f64);
    10.0 * t * d + 2.0 * t * h + 2.0 * v.num_heads as f64 * t * t
}

/// A stage that runs `blocks` blocks per image and trains `trained` of them (with the stem and
/// head when `ends_trained`).
fn stage(open: &OpenRun, blocks: usize, trained: usize, ends_trained: bool) -> Estimate {
    let v = &open.vit;
    let all = blocks as f64 * block_params(v) + ends_params(v);
    let trainable =
        trained as f64 * block_params(v) + if ends_trained { ends_params(v) } else { 0.0 };
    let batch = open.cfg.optim.batch_size as f64;
    let image = (v.channels * v.image_size * v.image_size) as f64;
    let per_image =
        blocks as f64 * block_activations(v) + 4.0 * v.tokens() as f64 * v.embed_dim as f64 + image;
    let loader = if open.cfg.data.dataset == crate::data::DatasetName::Folder {
        let workers = open
            .cfg
            .data
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        (workers.max(1) * open.cfg.data.prefetch) as f64 * batch * image * F32
    } else {
        0.0
    };
    Estimate {
        parameters: all * F32,
        optimizer: 3.0 * trainable * F32,
        activations: batch * per_image * F32,
        loader,
    }
}

/// Each stage of the run and what it needs alone.
pub fn stages(open: &OpenRun) -> Vec<(StageId, Estimate)> {
    let k = open.split.k();
    let mut out = vec![(StageId::META, stage(open, k, k, true))];
    for (i, &d) in open.split.divided_depths.iter().enumerate() {
        // module i replaces meta layer i and trains inside the frozen rest
        out.push((StageId::incubate(i), stage(open, k - 1 + d, d, false)));
    }
    let depth = open.vit.depth;
    out.push((StageId::ASSEMBLE, stage(open, depth, depth, true)));
    if open.cfg.e2e.enabled {
        out.push((StageId::E2E, stage(open, depth, depth, true)));
    }
    out
}

/// The most the run needs at once with `jobs` stages at a time: the E2E baseline beside
/// whichever of the method's phases needs most (the meta model; `jobs - 1` incubations; the
/// assembly). Once the baseline is done its worker may take an incubation too, but `jobs`
/// incubations need no more than `jobs - 1` and the baseline: an incubation has fewer blocks
/// (K - 1 + its own) and trains fewer parameters than the whole model.
pub fn peak(open: &OpenRun, jobs: usize) -> Estimate {
    let all = stages(open);
    let of = |id: StageId| all.iter().find(|(s, _)| *s == id).map(|(_, e)| *e);
    let e2e = of(StageId::E2E);
    let beside = if jobs >= 2 { e2e } else { None };
    let slots = if beside.is_some() { jobs - 1 } else { jobs }.max(1);
    let mut incubations: Vec<Estimate> = all
        .iter()
        .filter(|(s, _)| s.module.is_some())
        .map(|(_, e)| *e)
        .collect();
    incubations.sort_by(|a, b| b.total().total_cmp(&a.total()));
    let incubating = incubations
        .into_iter()
        .take(slots)
        .fold(Estimate::default(), Estimate::plus);
    let method = [of(StageId::META), Some(incubating), of(StageId::ASSEMBLE)]
        .into_iter()
        .flatten()
        .max_by(|a, b| a.total().total_cmp(&b.total()))
        .unwrap_or_default();
    let mut worst = method.plus(beside.unwrap_or_default());
    if beside.is_none() {
        if let Some(e) = e2e.filter(|e| e.total() > worst.total()) {
            worst = e;
        }
    }
    worst
}

/// The memory this process may use: `INCUBATOR_MEMORY_LIMIT` (bytes) when set, else the
/// smaller of what the system has available and what its cgroup (a container, a Slurm job)
/// still allows. `None` where neither can be read.
pub fn available() -> Option<(f64, String)> {
    if let Ok(v) = std::env::var("INCUBATOR_MEMORY_LIMIT") {
        if let Ok(bytes) = v.trim().parse::<f64>() {
            return Some((bytes, "INCUBATOR_MEMORY_LIMIT".into()));
        }
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| (kb * 1024.0, "available memory (/proc/meminfo)".to_string()))
    });
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok();
    let cgroup = match (read("memory.max"), read("memory.current")) {
        (Some(max), Some(current)) => max.trim().parse::<f64>().ok().map(|m| {
            let used = current.trim().parse::<f64>().unwrap_or(0.0);
            ((m - used).max(0.0), "the cgroup's memory.max".to_string())
        }),
        _ => None,
    };
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Refuses a run whose stages cannot fit: the estimate, the limit and what to change.
pub fn check(open: &OpenRun, jobs: usize) -> anyhow::Result<()> {
    let need = peak(open, jobs);
    let Some((limit, source)) = available() else {
        return Ok(());
    };
    if need.total() <= limit {
        return Ok(());
    }
    let v = &open.vit;
    anyhow::bail!(
        "this run needs about {need} with {jobs} stage{} at a time, and {source} is {}: it would abort on an allocation. Make it smaller (model.embed_dim = {}, model.depth = {}, model.num_classes = {}, optim.batch_size = {}{}), or pass --ignore-memory-estimate if you know it fits",
        if jobs == 1 { "" } else { "s" },
        gib(limit),
        v.embed_dim,
        v.depth,
        v.num_classes,
        open.cfg.optim.batch_size,
        if jobs > 1 { format!(", --jobs {jobs}") } else { String::new() }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vit(d: usize, depth: usize) -> VitConfig {
        let mut v = VitConfig::preset("mnist-small", 28, 1, Some(7), 10).unwrap();
        v.embed_dim = d;
        v.depth = depth;
        v.num_heads = 4;
        v
    }

    #[test]
    fn the_activation_term_matches_the_measured_slope_within_its_fit() {
        // peak RSS per extra image of `incubator e2e` on embedded MNIST (release build, batch
        // 64 -> 512 and 32 -> 256): 397 KiB at d64 x 4 blocks, 1280 KiB at d128 x 8
        for (v, measured_kib) in [(vit(64, 4), 397.0), (vit(128, 8), 1280.0)] {
            let per_image = (v.depth as f64 * block_activations(&v)
                + 4.0 * v.tokens() as f64 * v.embed_dim as f64
                + 784.0)
                * F32
                / 1024.0;
            let ratio = per_image / measured_kib;
            assert!((0.8..=1.1).contains(&ratio), "{ratio}: {per_image} KiB");
        }
    }

    #[test]
    fn parameters_count_as_the_model_has_them() {
        use crate::model::{Init, Network};
        use rand::SeedableRng;
        let v = vit(32, 3);
        let dev = crate::device::new_device(0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let net = Network::vit(
            &mut Init {
                dev: &dev,
                rng: &mut rng,
            },
            &v,
            &[3],
        );
        let counted: usize = crate::checkpoint::params_of(&net)
            .values()
            .map(|(_, data)| data.len())
            .sum();
        assert_eq!((3.0 * block_params(&v) + ends_params(&v)) as usize, counted);
    }
}
