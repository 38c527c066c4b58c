//! `incubator bench`: training throughput and peak memory of the model presets.
//!
//! Each preset runs in its own child process so that its peak resident memory (VmHWM) is its
//! own. The figures are printed next to a baseline measured in the same run, the machine's
//! matrix-multiply rate through the engine's kernels, and, with `--pytorch`, next to PyTorch
//! training the same model in the same command: absolute numbers on a shared machine say little.

use super::rounds::{median_and_range, range_coverage};
use clap::Args;
use dfdx::prelude::*;
use incubator_core::device::new_device;
use incubator_core::model::params::HasParams;
use incubator_core::model::{flops, Init, Mode, Network, VitConfig};
use incubator_core::train::loss::soft_cross_entropy;
use incubator_core::train::optimizer::AdamW;
use rand::SeedableRng;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// Presets to measure (default: all).
    #[arg(long, value_delimiter = ',')]
    presets: Vec<String>,
    #[arg(long, default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    batch: usize,
    /// Timed optimizer steps per preset (after one warm-up step).
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100000))]
    steps: usize,
    /// Image side and channels of the synthetic input (28/1: MNIST, 32/3: CIFAR).
    #[arg(long, default_value_t = 28, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(4..=1024))]
    image: usize,
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4))]
    channels: usize,
    /// Patch size. 4 (49 tokens on 28 px) is the compute-heavy setting of CIFAR-style ViTs;
    /// the embedded demo's default is 7 (16 tokens).
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    patch: usize,
    /// A Python with torch: also train the same model with PyTorch in the same run (same
    /// batch, same threads) and print the ratio of the two.
    #[arg(long, value_name = "PYTHON")]
    pytorch: Option<std::path::PathBuf>,
    /// Also print where a step's time goes: forward and backward per kind of operation (the
    /// timing markers cost a little; throughput figures are from the same steps).
    #[arg(long)]
    profile: bool,
    /// Measure each preset this many times (with --pytorch: ours and PyTorch in turn, the
    /// first of each pair alternating) and print the median with the lowest and highest: a
    /// drifting shared machine moves one run's ratio by 10% or more.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    rounds: usize,
    /// Internal: measure one preset in this process and print one JSON line.
    #[arg(long, hide = true)]
    child: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Figures {
    preset: String,
    samples_per_sec: f64,
    gflop_per_sec: f64,
    peak_rss_mib: f64,
    params: usize,
    step_ms: f64,
    /// (operation, forward ms per step, backward ms per step), with --profile
    breakdown: Vec<(String, f64, f64)>,
}

pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    if let Some(preset) = &a.child {
        let f = measure(a, preset)?;
        outln!("{}", serde_json::to_string(&f)?);
        return Ok(());
    }
    let presets: Vec<String> = if a.presets.is_empty() {
        // ViT-L and ViT-H take minutes per step here: name them with --presets to include them
        incubator_core::model::config::PRESETS
            .iter()
            .filter(|p| p.embed_dim <= 768)
            .map(|p| p.name.to_string())
            .collect()
    } else {
        a.presets.clone()
    };
    outln!("{}", machine_line());
    let gemm = gemm_gflops();
    outln!(
        "baseline: the engine's f32 matmul, 512x512x512, at {gemm:.1} GFLOP/s on this machine, now"
    );
    outln!(
        "batch {}, {}x{}x{} images, patch {}, {} timed steps after 1 warm-up",
        a.batch,
        a.channels,
        a.image,
        a.image,
        a.patch,
        a.steps
    );
    // PyTorch's matmul rate, with `--pytorch`
    let torch_matmul = match &a.pytorch {
        Some(python) => {
            let m: TorchMachine = run_torch(python, &["--matmul".to_string()])?;
            outln!(
                "PyTorch {} ({}): CPU capability {}, its f32 matmul 512x512x512 at {:.1} GFLOP/s, now{}",
                m.torch,
                m.device,
                m.cpu_capability,
                m.matmul_gflops,
                torch_cap_note()
            );
            Some(m.matmul_gflops)
        }
        None => None,
    };
    if a.rounds > 1 {
        outln!("{}", rounds_line(a.rounds, torch_matmul.is_some()));
    }
    let table_header = || {
        if torch_matmul.is_some() {
            outln!("| preset | params | samples/s | PyTorch samples/s | ratio (ours / PyTorch) | model GFLOP/s | vs PyTorch's matmul rate | peak RSS (MiB) | PyTorch peak RSS (MiB) |");
            outln!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        } else {
            outln!(
                "| preset | params | samples/s | model GFLOP/s | vs matmul rate | peak RSS (MiB) |"
            );
            outln!("|---|---:|---:|---:|---:|---:|");
        }
    };
    // one round: each preset's row as soon as it is measured; several: the rounds' lines as
    // they come, then the table
    if a.rounds == 1 {
        table_header();
    }
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    let mut profiles = Vec::new();
    for p in presets {
        let mut ours: Vec<Figures> = Vec::new();
        let mut theirs: Vec<TorchFigures> = Vec::new();
        for round in 0..a.rounds {
            // PyTorch first in every other round, so that a machine speeding up or slowing
            // down over the command favours neither side
            let torch_first = round % 2 == 1;
            if let (true, Some(python)) = (torch_first, &a.pytorch) {
                theirs.push(torch_figures(python, a, &p)?);
            }
            ours.push(child_figures(&exe, a, &p)?);
            if let (false, Some(python)) = (torch_first, &a.pytorch) {
                theirs.push(torch_figures(python, a, &p)?);
            }
            if a.rounds > 1 {
                outln!("{}", round_line(&p, round, &ours[round], theirs.get(round)));
            }
        }
        if a.profile {
            profiles.push((p.clone(), median_profile(&ours)));
        }
        let row = table_row(&ours, &theirs, torch_matmul, gemm);
        if a.rounds == 1 {
            outln!("{row}");
        } else {
            rows.push(row);
        }
    }
    if a.rounds > 1 {
        table_header();
        for row in rows {
            outln!("{row}");
        }
    }
    for (preset, (step_ms, rows)) in profiles {
        let of = if a.rounds > 1 {
            ", medians of the rounds"
        } else {
            ""
        };
        outln!("\nwhere a training step of {preset} goes ({step_ms:.1} ms per step{of}):");
        outln!("| operation | forward (ms) | backward (ms) | share of the step |");
        outln!("|---|---:|---:|---:|");
        let mut rows = rows;
        rows.sort_by(|x, y| (y.1 + y.2).total_cmp(&(x.1 + x.2)));
        for (name, fwd, bwd) in rows {
            outln!(
                "| {name} | {fwd:.2} | {bwd:.2} | {:.1}% |",
                100.0 * (fwd + bwd) / step_ms
            );
        }
    }
    Ok(())
}

/// One preset measured in a child process of ours (`bench --child`).
fn child_figures(exe: &std::path::Path, a: &BenchArgs, preset: &str) -> anyhow::Result<Figures> {
    let out = std::process::Command::new(exe)
        .args(["bench", "--child", preset])
        .args(shape_args(a))
        .args(a.profile.then_some("--profile"))
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "bench of {preset} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// What `--rounds` reports, said once above the rounds.
fn rounds_line(rounds: usize, torch: bool) -> String {
    let who = if torch {
        "ours and PyTorch in turn (the first of each pair alternating); the ratio is the median \
         of the rounds' ratios"
    } else {
        "samples/s is the median of the rounds"
    };
    format!(
        "{rounds} rounds per preset, {who}, [lowest, highest] after it: an interval that holds \
         the median with {:.1}% confidence, whatever the distribution (1 - 2^(1-{rounds}); \
         rounds are taken as independent, which a drifting machine only approximates)",
        100.0 * range_coverage(rounds)
    )
}

fn round_line(preset: &str, round: usize, ours: &Figures, theirs: Option<&TorchFigures>) -> String {
    match theirs {
        Some(t) => format!(
            "{preset} round {} ({} first): ours {:.1}, PyTorch {:.1} samples/s, ratio {:.3}",
            round + 1,
            if round % 2 == 1 { "PyTorch" } else { "ours" },
            ours.samples_per_sec,
            t.samples_per_sec,
            ours.samples_per_sec / t.samples_per_sec
        ),
        None => format!(
            "{preset} round {}: {:.1} samples/s",
            round + 1,
            ours.samples_per_sec
        ),
    }
}

/// The median of `xs` and, for more than one, ` [lowest, highest]`, with `digits` decimals.
fn median_text(xs: &[f64], digits: usize) -> (f64, String) {
    let (median, lowest, highest) = median_and_range(xs);
    let text = if xs.len() > 1 {
        format!("{median:.digits$} [{lowest:.digits$}, {highest:.digits$}]")
    } else {
        format!("{median:.digits$}")
    };
    (median, text)
}

/// The table row of one preset from its rounds (one pair of figures per round).
fn table_row(
    ours: &[Figures],
    theirs: &[TorchFigures],
    torch_matmul: Option<f64>,
    gemm: f64,
) -> String {
    let f = &ours[0];
    let gflop_per_sample = f.gflop_per_sec / f.samples_per_sec;
    let rates: Vec<f64> = ours.iter().map(|f| f.samples_per_sec).collect();
    let (rate, rate_text) = median_text(&rates, 1);
    let rss = ours.iter().map(|f| f.peak_rss_mib).fold(0.0, f64::max);
    let params = f.params as f64 / 1e6;
    let gflops = rate * gflop_per_sample;
    match torch_matmul {
        Some(torch_matmul) => {
            let (_, torch_text) = median_text(
                &theirs.iter().map(|t| t.samples_per_sec).collect::<Vec<_>>(),
                1,
            );
            let ratios: Vec<f64> = ours
                .iter()
                .zip(theirs)
                .map(|(o, t)| o.samples_per_sec / t.samples_per_sec)
                .collect();
            let (_, ratio_text) = median_text(&ratios, 2);
            let torch_rss = theirs.iter().map(|t| t.peak_rss_mib).fold(0.0, f64::max);
            format!(
                "| {} | {params:.2}M | {rate_text} | {torch_text} | {ratio_text} | {gflops:.1} | {:.2} | {rss:.0} | {torch_rss:.0} |",
                f.preset,
                gflops / torch_matmul,
            )
        }
        None => format!(
            "| {} | {params:.2}M | {rate_text} | {gflops:.1} | {:.2} | {rss:.0} |",
            f.preset,
            gflops / gemm,
        ),
    }
}

/// The step time and each operation's forward and backward time, medians over the rounds.
fn median_profile(ours: &[Figures]) -> (f64, Vec<(String, f64, f64)>) {
    let median = |xs: Vec<f64>| median_text(&xs, 1).0;
    let step = median(ours.iter().map(|f| f.step_ms).collect());
    let rows = ours[0]
        .breakdown
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| {
            let fwd = median(ours.iter().map(|f| f.breakdown[i].1).collect());
            let bwd = median(ours.iter().map(|f| f.breakdown[i].2).collect());
            (name.clone(), fwd, bwd)
        })
        .collect();
    (step, rows)
}

/// The training recipe's drop-path rate in the timed steps (the paper's for small ViTs).
const DROP_PATH: f64 = 0.1;

fn measure(a: &BenchArgs, preset: &str) -> anyhow::Result<Figures> {
    let vit = VitConfig::preset(preset, a.image, a.channels, Some(a.patch), 10)
        .ok_or_else(|| anyhow::anyhow!("unknown preset {preset}"))?;
    let dev = new_device(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let depths = vec![vit.depth];
    let mut net = Network::vit(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &vit,
        &depths,
    );
    let names = net.named_params().into_iter().map(|(n, _)| n).collect();
    let mut opt = AdamW::new(names, [0.9, 0.999], 1e-8, 0.05);
    let patches: Tensor<(usize, usize, usize), f32, _> =
        dev.sample_normal_like(&(a.batch, vit.num_patches(), vit.patch_dim()));
    let targets: Tensor<(usize, usize), f32, _> =
        dev.sample_uniform_like(&(a.batch, 10)).softmax::<Axis<1>>();
    let mut optimizer_s = 0.0;
    let mut step = |net: &mut Network, optimizer_s: &mut f64| {
        let mut mode = Mode {
            train: true,
            rng: Some(&mut rng),
        };
        let logits = net.forward_traced_from(patches.clone(), 0, DROP_PATH, &mut mode);
        let mut grads = soft_cross_entropy(logits, targets.clone()).backward();
        let t = Instant::now();
        opt.update(net, &mut grads, 1e-4, &Default::default());
        *optimizer_s += t.elapsed().as_secs_f64();
    };
    step(&mut net, &mut 0.0);
    if a.profile {
        incubator_core::ops::profile::start();
    }
    let t = Instant::now();
    for _ in 0..a.steps {
        step(&mut net, &mut optimizer_s);
    }
    // CUDA work is asynchronous: time it to its end
    dfdx::tensor::Synchronize::synchronize(&dev);
    let secs = t.elapsed().as_secs_f64();
    let per_step = |s: f64| 1000.0 * s / a.steps as f64;
    let mut breakdown: Vec<(String, f64, f64)> = incubator_core::ops::profile::finish()
        .into_iter()
        .map(|(name, (fwd, bwd, _))| (name.to_string(), per_step(fwd), per_step(bwd)))
        .collect();
    if a.profile {
        breakdown.push(("AdamW update".into(), per_step(optimizer_s), 0.0));
        let named: f64 = breakdown.iter().map(|(_, f, b)| f + b).sum();
        breakdown.push((
            "rest (loss, tape, allocation, untimed glue)".into(),
            per_step(secs) - named,
            0.0,
        ));
    }
    let samples_per_sec = (a.steps * a.batch) as f64 / secs;
    // model work as computed: the last block computes the class token alone, and attention
    // skips the samples drop-path drops (on average)
    let tokens = vit.num_patches() + 1;
    let skipped = flops::skipped_by_first_token(&vit, tokens)
        + flops::skipped_by_drop_path(&vit, tokens, &net.drop_path_rates(DROP_PATH));
    let gflop = (flops::train_flops_per_sample(&net, &patches, 0) - 3.0 * skipped) / 1e9;
    Ok(Figures {
        preset: preset.into(),
        samples_per_sec,
        gflop_per_sec: samples_per_sec * gflop,
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        params: net.num_params(),
        step_ms: per_step(secs),
        breakdown,
    })
}

/// Batch, steps and input shape as flags: our child process and the PyTorch script take the
/// same ones, so both measure the same thing.
fn shape_args(a: &BenchArgs) -> Vec<String> {
    [
        ("--batch", a.batch),
        ("--steps", a.steps),
        ("--image", a.image),
        ("--channels", a.channels),
        ("--patch", a.patch),
    ]
    .iter()
    .flat_map(|(flag, v)| [flag.to_string(), v.to_string()])
    .collect()
}

#[derive(serde::Deserialize)]
struct TorchFigures {
    samples_per_sec: f64,
    peak_rss_mib: f64,
}

/// The same preset trained by PyTorch (`scripts/reference/bench.py`) in a child process.
fn torch_figures(
    python: &std::path::Path,
    a: &BenchArgs,
    preset: &str,
) -> anyhow::Result<TorchFigures> {
    let mut args = vec!["--preset".to_string(), preset.to_string()];
    args.extend(shape_args(a));
    run_torch(python, &args)
}

/// What PyTorch runs on this machine: `bench.py --matmul`.
#[derive(serde::Deserialize)]
struct TorchMachine {
    torch: String,
    device: String,
    cpu_capability: String,
    matmul_gflops: f64,
}

/// The CPU's name and the levels our kernels run, with what capped them.
fn machine_line() -> String {
    use incubator_core::ops::isa::{cap_from_env, Isa, CAP_VAR};
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = incubator_core::ops::gemm::threads();
    if cfg!(feature = "cuda") {
        return format!(
            "machine: {cpu}, {threads} threads; training on CUDA (cuBLAS, dfdx's kernels)"
        );
    }
    let (active, detected) = (Isa::active(), Isa::detected());
    // (a bad cap never gets here: the CLI refuses it at start)
    let why = match cap_from_env() {
        Ok(Some(cap)) if active < detected => format!(
            "capped by {CAP_VAR}={cap}; the CPU has {}",
            detected.describe()
        ),
        Ok(Some(cap)) => format!("{CAP_VAR}={cap}, the CPU's widest"),
        _ => "the CPU's widest".to_string(),
    };
    format!(
        "machine: {cpu}, {threads} threads; kernels: {} ({why}): matrix products (gemm 0.19), GELU, LayerNorm, softmax, residuals",
        active.describe()
    )
}

/// The same cap for PyTorch's kernels when ours are capped, so both sides run one level.
fn torch_cap_env() -> Vec<(&'static str, &'static str)> {
    use incubator_core::ops::isa::Isa;
    if cfg!(feature = "cuda") || Isa::active() == Isa::detected() {
        return Vec::new();
    }
    let (aten, mkl, onednn) = match Isa::active() {
        Isa::Avx512 => ("avx512", "AVX512", "AVX512_CORE"),
        Isa::Avx2 => ("avx2", "AVX2", "AVX2"),
        Isa::Baseline => ("default", "SSE4_2", "SSE41"),
    };
    vec![
        ("ATEN_CPU_CAPABILITY", aten),
        ("MKL_ENABLE_INSTRUCTIONS", mkl),
        ("ONEDNN_MAX_CPU_ISA", onednn),
    ]
}

fn torch_cap_note() -> String {
    let env = torch_cap_env();
    if env.is_empty() {
        return String::new();
    }
    let set: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" (capped as ours: {})", set.join(" "))
}

/// `scripts/reference/bench.py`, handed to Python as `-c` source: no file to write and clean
/// up (a script written to the temporary folder was left there by every run).
const TORCH_SCRIPT: &str = include_str!("../../scripts/reference/bench.py");

/// Runs the PyTorch script with `args` plus the threads and device we use, and reads its one
/// JSON line.
fn run_torch<T: serde::de::DeserializeOwned>(
    python: &std::path::Path,
    args: &[String],
) -> anyhow::Result<T> {
    // ours: rayon's pool (`RAYON_NUM_THREADS`, else one per core); PyTorch gets as many
    let threads = incubator_core::ops::gemm::threads();
    let out = std::process::Command::new(python)
        .args(["-c", TORCH_SCRIPT])
        .args(args)
        .args(["--threads", &threads.to_string()])
        // a CUDA build trains on the GPU: so does PyTorch
        .args([
            "--device",
            if cfg!(feature = "cuda") {
                "cuda"
            } else {
                "cpu"
            },
        ])
        .envs(torch_cap_env())
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {} ({e}); give a Python with torch installed",
                python.display()
            )
        })?;
    if !out.status.success() {
        anyhow::bail!(
            "the PyTorch benchmark failed (is torch installed in {}?): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The machine's f32 matrix-multiply rate through the kernels the engine's blocks use (our
/// `gemm` calls on the CPU, dfdx's cuBLAS on CUDA), 512x512x512, best of a few tries.
fn gemm_gflops() -> f64 {
    let n = 512;
    let rate = |secs: f64| 2.0 * (n * n * n) as f64 / secs / 1e9;
    #[cfg(not(feature = "cuda"))]
    {
        use incubator_core::ops::gemm::{matmul, Mat};
        let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut c = vec![0.0; n * n];
        let m = Mat::dense(n, n);
        (0..5)
            .map(|_| {
                let t = Instant::now();
                matmul(&mut c, m, &a, m, &a, m, 1.0, false);
                std::hint::black_box(&c);
                rate(t.elapsed().as_secs_f64())
            })
            .fold(0.0, f64::max)
    }
    #[cfg(feature = "cuda")]
    {
        let dev = new_device(0);
        let x: Tensor<(usize, usize), f32, _> = dev.sample_normal_like(&(n, n));
        let y: Tensor<(usize, usize), f32, _> = dev.sample_normal_like(&(n, n));
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let z = x.clone().matmul(y.clone());
                // the product's end on the GPU, not a copy to the host (which took most of
                // the time measured when this read the result back)
                dfdx::tensor::Synchronize::synchronize(&dev);
                std::hint::black_box(&z);
                rate(t.elapsed().as_secs_f64())
            })
            .fold(0.0, f64::max)
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
