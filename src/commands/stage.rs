//! The stage commands: each opens the run directory, runs one stage (or all), and exits.

use incubator_core::config::RunConfig;
use incubator_core::run_dir::OpenMode;
use incubator_core::stages::{self, report::Report, Engine};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Options every stage command takes.
#[derive(clap::Args, Clone)]
pub struct StageArgs {
    /// TOML config (see `incubator config`). Needed only when the run directory is new; an
    /// existing run keeps its stored config. Repeatable: later files override earlier ones key
    /// by key (`-c examples/deit-recipe.toml -c examples/dgl.toml`).
    #[arg(long, short)]
    pub config: Vec<PathBuf>,
    /// Run directory: config, checkpoints, events, TensorBoard files, report.
    #[arg(long, short = 'd', default_value = "runs/default")]
    pub run_dir: PathBuf,
    /// No progress bars (per-epoch lines are still printed).
    #[arg(long)]
    pub no_progress: bool,
    /// A plugin library (or a directory of them) to load besides the config's
    /// `plugins.libraries`; repeatable. Every process of a run must be given the same ones.
    #[arg(long = "plugin", value_name = "PATH")]
    pub plugins: Vec<PathBuf>,
    /// Train even when the memory estimate (parameters, optimizer moments, activations at
    /// the batch size, loader) exceeds what this machine has available.
    #[arg(long)]
    pub ignore_memory_estimate: bool,
}

/// The config files `-c` names, laid over each other; `None` when there are none.
fn configs(args: &StageArgs) -> anyhow::Result<Option<RunConfig>> {
    Ok((!args.config.is_empty())
        .then(|| RunConfig::load_layers(&args.config))
        .transpose()?)
}

/// The run of `args` with its data. `mode`: whether the command may start a new run there.
pub fn engine(args: &StageArgs, mode: OpenMode) -> anyhow::Result<Engine> {
    // ranks training together: rank 0 makes the run directory, then the others open it
    let ranks = incubator_core::collective::current();
    let writer = incubator_core::collective::is_writer();
    if !writer {
        ranks.barrier();
    }
    let opened = Engine::open(
        &args.run_dir,
        configs(args)?.as_ref(),
        mode,
        &super::plugin_sources(&args.plugins),
    );
    if writer {
        ranks.barrier();
    }
    let mut engine = opened?;
    engine.show_progress = !args.no_progress && std::io::stderr().is_terminal();
    Ok(engine)
}

pub fn run(
    args: &StageArgs,
    jobs: Option<usize>,
    serve: Option<(std::net::SocketAddr, crate::serve::access::AccessArgs)>,
) -> anyhow::Result<()> {
    let world = incubator_core::collective::current().ranks().world;
    if world > 1 && jobs.is_some_and(|j| j > 1) {
        anyhow::bail!(
            "--jobs with {world} ranks: ranks training together run the stages one after \
             another (every rank must take part in each stage's all-reduces in the same \
             order); drop --jobs"
        );
    }
    let jobs = jobs.unwrap_or_else(|| match world {
        1 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        _ => 1,
    });
    // one live server, rank 0's
    let serve = serve.filter(|_| incubator_core::collective::is_writer());
    let engine = training(args, OpenMode::Start, jobs)?;
    eprintln!(
        "run {}: {} ({} train / {} test images), ViT d{} depth {} heads {}, modules {:?}",
        args.run_dir.display(),
        engine.data.name(),
        engine.data.train().len(),
        engine.data.test().len(),
        engine.vit.embed_dim,
        engine.vit.depth,
        engine.vit.num_heads,
        engine.split.divided_depths
    );
    let served = serve
        .map(|(addr, access)| {
            crate::serve::start(
                &[args.run_dir.clone()],
                addr,
                crate::serve::bundle::find(None),
                &access,
            )
        })
        .transpose()?;
    if let Some(listening) = &served {
        listening.announce("live dashboard: ");
    }
    let report = stages::pipeline::run(&engine, jobs)?;
    outln!("{}", report.to_markdown());
    eprintln!(
        "report written to {}",
        engine.run.root.join("report.md").display()
    );
    if let Some(listening) = &served {
        outln!(
            "run finished; still serving at {} (Ctrl-C to stop)",
            listening.url()
        );
        // The stop handlers are installed for training; here a signal ends the serving.
        while incubator_core::interrupt::requested().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The run of `args`, refused before anything trains when its stages, `jobs` at a time,
/// cannot fit in memory (the whole run's, not only this command's stage: a run that cannot
/// finish is refused before its first stage, not after it).
fn training(args: &StageArgs, mode: OpenMode, jobs: usize) -> anyhow::Result<Engine> {
    let engine = engine(args, mode)?;
    if !args.ignore_memory_estimate {
        stages::memory::check(&engine, jobs)?;
    }
    Ok(engine)
}

pub fn meta(args: &StageArgs) -> anyhow::Result<()> {
    stages::meta::run(&training(args, OpenMode::Start, 1)?).map(|_| ())
}

pub fn incubate(args: &StageArgs, module: usize) -> anyhow::Result<()> {
    stages::incubate::run(&training(args, OpenMode::Existing, 1)?, module).map(|_| ())
}

pub fn assemble(args: &StageArgs) -> anyhow::Result<()> {
    stages::assemble::run(&training(args, OpenMode::Existing, 1)?).map(|_| ())
}

pub fn e2e(args: &StageArgs) -> anyhow::Result<()> {
    stages::e2e::run(&training(args, OpenMode::Start, 1)?).map(|_| ())
}

/// What `incubator import FILE --as` makes of a timm checkpoint.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum ImportAs {
    /// the meta model: the modules incubate inside it
    Meta,
    /// the E2E model: a teacher, the baseline
    E2e,
    /// the weights the E2E baseline starts from (a pretrained model fine-tuned)
    Init,
}

/// `incubator import FILE --as meta|e2e|init`: a timm checkpoint as a finished stage, or as
/// the baseline's starting weights.
pub fn import(args: &StageArgs, file: &Path, stage: &ImportAs) -> anyhow::Result<()> {
    let id = match stage {
        ImportAs::Meta => incubator_core::events::StageId::META,
        ImportAs::E2e => incubator_core::events::StageId::E2E,
        ImportAs::Init => {
            let run = stages::OpenRun::open(
                &args.run_dir,
                configs(args)?.as_ref(),
                OpenMode::Start,
                &super::plugin_sources(&args.plugins),
            )?;
            stages::import::import_timm_init(&run, file)?;
            outln!(
                "{} imported as the weights the E2E baseline of {} starts from; train it with `incubator e2e -d {}`",
                file.display(),
                args.run_dir.display(),
                args.run_dir.display()
            );
            return Ok(());
        }
    };
    let engine = engine(args, OpenMode::Start)?;
    let s = stages::import::import_timm(&engine, file, id)?;
    outln!(
        "{} imported as the {id} model of {}: top-1 {:.2}%, top-5 {:.2}% on its test split ({} images)",
        file.display(),
        args.run_dir.display(),
        100.0 * s.outcome.top1,
        100.0 * s.outcome.top5,
        engine.data.test().len()
    );
    Ok(())
}

pub fn report(run_dir: &Path) -> anyhow::Result<()> {
    // what the run is, not its data: the table comes from the stage summaries
    let engine = super::open_existing(run_dir)?;
    let report = Report::from_run(&engine.run, &engine.plan)?;
    report.write(&engine.run)?;
    outln!("{}", report.to_markdown());
    Ok(())
}
