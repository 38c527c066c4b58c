//! The parts of the `incubator` command that tests and fuzz targets drive directly: the live
//! server, and the bodies of the fuzz targets (`fuzz/`), which the corpus replay in
//! `tests/fuzz_corpus.rs` runs too.

pub mod fuzz;
pub mod serve;
