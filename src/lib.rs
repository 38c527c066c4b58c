//! The `incubator` command as a library: its command line (`cli::main`, which the binary and
//! out-of-tree plugin crates run), and the parts that tests and fuzz targets drive directly:
//! the live server, and the bodies of the fuzz targets (`fuzz/`), which the corpus replay in
//! `tests/fuzz_corpus.rs` runs too.

#[macro_use]
mod stdout;

pub mod cli;
mod commands;
pub mod fuzz;
mod ranks;
pub mod serve;
mod slurm;
pub mod sweep;
