//! The processes that train one stage together (data parallelism), and the few collective
//! operations the engine needs from them. The engine only sees [`Collective`]; the command line
//! installs MPI's (`mpirun -np N`, `srun -n N`) when started as one of several ranks, and one
//! process alone is [`Solo`]. Only rank 0 writes files ([`is_writer`]).

use std::sync::OnceLock;

/// This process's place among the processes training one stage together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranks {
    pub rank: usize,
    pub world: usize,
}

impl Ranks {
    /// One process alone.
    pub const SOLO: Ranks = Ranks { rank: 0, world: 1 };
}

/// What data-parallel training asks of the ranks: every rank calls each operation in the same
/// order (they are collective), from one thread at a time.
pub trait Collective: Send + Sync {
    fn ranks(&self) -> Ranks;
    /// Element-wise sums of `buf` over the ranks, into every rank's `buf`.
    fn sum_f32(&self, buf: &mut [f32]);
    /// Element-wise sums of `buf` over the ranks (exact: counts, codes).
    fn sum_u64(&self, buf: &mut [u64]);
    /// Element-wise sums of `buf` over the ranks, in double precision (sums of losses).
    fn sum_f64(&self, buf: &mut [f64]);
    /// Rank 0's `buf` into every rank's.
    fn broadcast_f32(&self, buf: &mut [f32]);
    /// Rank 0's bytes into every rank's (NCCL's unique id, say).
    fn broadcast_u8(&self, buf: &mut [u8]);
    /// This rank's index among the ranks on its machine: which of the machine's GPUs it takes.
    fn local_rank(&self) -> usize;
    /// Returns once every rank has called it.
    fn barrier(&self);
    /// The library and how it was started, for logs (`Open MPI v4.1.4, 2 ranks`).
    fn describe(&self) -> String;
}

/// One process alone: every operation is the identity.
pub struct Solo;

impl Collective for Solo {
    fn ranks(&self) -> Ranks {
        Ranks::SOLO
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn sum_u64(&self, _: &mut [u64]) {}
    fn sum_f64(&self, _: &mut [f64]) {}
    fn broadcast_f32(&self, _: &mut [f32]) {}
    fn broadcast_u8(&self, _: &mut [u8]) {}
    fn local_rank(&self) -> usize {
        0
    }
    fn barrier(&self) {}
    fn describe(&self) -> String {
        "one process".into()
    }
}

static CURRENT: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// Makes `c` this process's collective; once, before any stage runs. Refused (returned) when
/// one is already in place.
pub fn install(c: Box<dyn Collective>) -> Result<(), Box<dyn Collective>> {
    CURRENT.set(c)
}

/// This process's collective ([`Solo`] unless one was installed).
pub fn current() -> &'static dyn Collective {
    CURRENT.get_or_init(|| Box::new(Solo)).as_ref()
}

/// Whether this process writes the run's files: rank 0 does, the other ranks compute the same
/// things and leave the files to it.
pub fn is_writer() -> bool {
    current().ranks().rank == 0
}
