//! Starting as one of several processes that train each stage together (data parallelism):
//! `mpirun -np N incubator ...`, or `srun -n N --mpi=pmix incubator ...` under Slurm. Built
//! with the `mpi` feature, the MPI world (Open MPI, through the `mpi` crate) becomes the
//! engine's collective (`incubator_core::collective`); without it, a multi-process start is
//! refused with how to build it. One process alone never touches MPI.

/// How many processes the launcher started together, by its environment: Open MPI's mpirun,
/// PMI-2 (`srun --mpi=pmi2`) or PMIx under Slurm (`srun --mpi=pmix`).
fn launched_world() -> Option<usize> {
    let var = |name: &str| std::env::var(name).ok()?.trim().parse::<usize>().ok();
    var("OMPI_COMM_WORLD_SIZE")
        .or_else(|| var("PMI_SIZE"))
        .or_else(|| {
            std::env::var_os("PMIX_RANK")?;
            var("SLURM_STEP_NUM_TASKS")
        })
}

/// This process's ranks while the command runs; dropping it ends MPI (`MPI_Finalize`).
pub struct Started {
    #[cfg(feature = "mpi")]
    _universe: mpi::environment::Universe,
}

/// Joins the other ranks when the launcher started several, before any thread starts.
pub fn start() -> anyhow::Result<Option<Started>> {
    let Some(world) = launched_world().filter(|&n| n > 1) else {
        return Ok(None);
    };
    share_cores(world);
    #[cfg(feature = "mpi")]
    {
        mpi_world::start().map(Some)
    }
    #[cfg(not(feature = "mpi"))]
    anyhow::bail!(
        "started as one of {world} processes (by mpirun or srun), but this incubator was built \
         without MPI: build it with `cargo build --release --features mpi` (Debian: apt-get \
         install openmpi-bin libopenmpi-dev libclang-dev), or start one process"
    )
}

/// Each rank's CPU kernels get their share of this machine's cores (unless
/// `RAYON_NUM_THREADS` says otherwise): N ranks of all cores each would fight over them.
fn share_cores(world: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let here = std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
        .or_else(|_| std::env::var("SLURM_NTASKS_PER_NODE"))
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(world)
        .max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // before rayon's pool exists (it reads this once) and before any other thread runs
    std::env::set_var("RAYON_NUM_THREADS", (cores / here).max(1).to_string());
}

impl Started {
    /// Ends a failed command on every rank: the others may be waiting for this one in a
    /// collective, where they would wait for ever.
    pub fn abort(self) -> ! {
        #[cfg(feature = "mpi")]
        {
            use mpi::traits::Communicator;
            self._universe.world().abort(1)
        }
        #[cfg(not(feature = "mpi"))]
        unreachable!("no ranks without MPI")
    }
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use super::Started;
    use incubator_core::collective::{Collective, Ranks};
    use mpi::collective::SystemOperation;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;
    use std::sync::Mutex;

    /// MPI's world communicator, called from one thread at a time (the lock; MPI is
    /// initialised for that: `MPI_THREAD_SERIALIZED`).
    struct World {
        comm: Mutex<SimpleCommunicator>,
        ranks: Ranks,
        library: String,
    }

    // SAFETY: every use of the communicator holds the lock, and MPI was initialised with
    // MPI_THREAD_SERIALIZED, which allows calls from any thread one at a time.
    unsafe impl Send for World {}
    unsafe impl Sync for World {}

    impl Collective for World {
        fn ranks(&self) -> Ranks {
            self.ranks
        }
        fn sum_f32(&self, buf: &mut [f32]) {
            let send = buf.to_vec();
            let comm = self.comm.lock().unwrap();
            comm.all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn sum_u64(&self, buf: &mut [u64]) {
            let send = buf.to_vec();
            let comm = self.comm.lock().unwrap();
            comm.all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn sum_f64(&self, buf: &mut [f64]) {
            let send = buf.to_vec();
            let comm = self.comm.lock().unwrap();
            comm.all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn broadcast_f32(&self, buf: &mut [f32]) {
            let comm = self.comm.lock().unwrap();
            comm.process_at_rank(0).broadcast_into(buf);
        }
        fn barrier(&self) {
            self.comm.lock().unwrap().barrier();
        }
        fn describe(&self) -> String {
            format!("{}, {} ranks", self.library, self.ranks.world)
        }
    }

    pub fn start() -> anyhow::Result<Started> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| anyhow::anyhow!("MPI was already initialised in this process"))?;
        let comm = universe.world();
        let ranks = Ranks {
            rank: comm.rank() as usize,
            world: comm.size() as usize,
        };
        let library = mpi::environment::library_version()
            .unwrap_or_else(|_| "MPI".into())
            .lines()
            .next()
            .unwrap_or("MPI")
            .trim()
            .to_string();
        let world = World {
            comm: Mutex::new(comm),
            ranks,
            library,
        };
        if incubator_core::collective::install(Box::new(world)).is_err() {
            anyhow::bail!("the ranks were set up twice in one process");
        }
        Ok(Started {
            _universe: universe,
        })
    }
}
