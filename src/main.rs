//! `incubator`: Deep Model Assembling from the command line (see `src/cli.rs`).

fn main() -> std::process::ExitCode {
    incubator::cli::main()
}
