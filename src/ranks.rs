//! Starting as one of several processes that train each stage together (data parallelism):
//! `mpirun -np N incubator ...`, or `srun -n N --mpi=pmix incubator ...` under Slurm. Built
//! with the `mpi` feature, the MPI world (Open MPI, through the `mpi` crate) becomes the
//! engine's collective (`incubator_core::collective`); without it, a multi-process start is
//! refused with how to build it. One process alone never touches MPI.

/// How to get a build that trains as several ranks.
pub const BUILD_WITH_MPI: &str = "build it with `cargo build --release --features mpi` \
    (Debian: apt-get install openmpi-bin libopenmpi-dev libclang-dev)";

/// The launcher's variables, as the process has them.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// How many processes the launcher started together, by its environment: Open MPI's mpirun,
/// PMI-2 (`srun --mpi=pmi2`) or PMIx under Slurm (`srun --mpi=pmix`).
fn launched_world(env: &dyn Fn(&str) -> Option<String>) -> Option<usize> {
    let var = |name: &str| env(name)?.trim().parse::<usize>().ok();
    var("OMPI_COMM_WORLD_SIZE")
        .or_else(|| var("PMI_SIZE"))
        .or_else(|| {
            env("PMIX_RANK")?;
            var("SLURM_STEP_NUM_TASKS")
        })
}

/// `srun -n N` without an MPI plugin (`--mpi=none`, a cluster's default) starts N processes
/// that cannot find each other: each would train alone and write the same files. Their
/// only mark is Slurm's step size; a batch script's own shell has none.
fn srun_without_mpi(env: &dyn Fn(&str) -> Option<String>) -> Option<usize> {
    if launched_world(env).is_some() {
        return None;
    }
    let tasks = env("SLURM_STEP_NUM_TASKS")?;
    tasks.trim().parse::<usize>().ok().filter(|&n| n > 1)
}

/// Whether this process trains alone or as one of `world` ranks, by the launcher's
/// environment (`env`), whether this build has MPI (`with_mpi`) and whether the command
/// trains (`trains`); refused, with the fix, when the processes could not find each other or
/// the command is not one that trains as ranks.
fn ranks_to_join(
    env: &dyn Fn(&str) -> Option<String>,
    with_mpi: bool,
    trains: bool,
) -> Result<Option<usize>, String> {
    let started = launched_world(env).or_else(|| srun_without_mpi(env));
    if let Some(n) = started.filter(|&n| n > 1 && !trains) {
        // N copies of a sweep, a submission or an evaluation would each do all of it, into
        // the same files
        return Err(format!(
            "started as one of {n} processes (by mpirun or srun), but only the training \
             commands (run, meta, incubate, assemble, e2e) train as several ranks: start this \
             one as one process"
        ));
    }
    if let Some(n) = srun_without_mpi(env) {
        return Err(format!(
            "started by srun as one of {n} tasks, but without an MPI plugin: the tasks cannot \
             find each other, and each would train the stage alone into the same files. Start \
             them with `srun --mpi=pmix` (or the cluster's MPI plugin: `srun --mpi=list`), or \
             start one task"
        ));
    }
    let Some(world) = launched_world(env).filter(|&n| n > 1) else {
        return Ok(None);
    };
    if !with_mpi {
        return Err(format!(
            "started as one of {world} processes (by mpirun or srun), but this incubator was \
             built without MPI: {BUILD_WITH_MPI}, or start one process"
        ));
    }
    Ok(Some(world))
}

/// This process's ranks while the command runs; dropping it ends MPI (`MPI_Finalize`).
pub struct Started {
    #[cfg(feature = "mpi")]
    _universe: mpi::environment::Universe,
}

/// Joins the other ranks when the launcher started several, before any thread starts;
/// `trains`: whether the command is one that trains as ranks (a stage, or `run`).
pub fn start(trains: bool) -> anyhow::Result<Option<Started>> {
    let Some(world) =
        ranks_to_join(&process_env, cfg!(feature = "mpi"), trains).map_err(anyhow::Error::msg)?
    else {
        return Ok(None);
    };
    share_cores(world);
    #[cfg(feature = "mpi")]
    {
        mpi_world::start().map(Some)
    }
    #[cfg(not(feature = "mpi"))]
    unreachable!("refused above: {world} ranks without MPI")
}

/// Each rank's CPU kernels get their share of this machine's cores (unless
/// `RAYON_NUM_THREADS` says otherwise): N ranks of all cores each would fight over them.
/// Under Slurm a task's share is what the job gave it (`--cpus-per-task`).
fn share_cores(world: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads_per_rank(cores, world, &|name| std::env::var(name).ok());
    // before rayon's pool exists (it reads this once) and before any other thread runs
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
}

/// The threads of one rank on a machine of `cores`, by the launcher's environment (`env`).
fn threads_per_rank(cores: usize, world: usize, env: &dyn Fn(&str) -> Option<String>) -> usize {
    let number = |name: &str| env(name)?.trim().parse::<usize>().ok().filter(|&n| n > 0);
    if env("SLURM_STEP_NUM_TASKS").is_some() {
        if let Some(cpus) = number("SLURM_CPUS_PER_TASK") {
            return cpus.min(cores);
        }
    }
    let here = number("OMPI_COMM_WORLD_LOCAL_SIZE")
        .or_else(|| {
            let node = number("SLURM_NODEID").unwrap_or(0);
            slurm_tasks_on_node(&env("SLURM_STEP_TASKS_PER_NODE")?, node)
        })
        .unwrap_or(world)
        .max(1);
    (cores / here).max(1)
}

/// Slurm's tasks on node `node` from its per-node list: `2(x3),1` is 2, 2, 2, 1.
fn slurm_tasks_on_node(list: &str, node: usize) -> Option<usize> {
    let mut at = 0;
    for part in list.split(',') {
        let (tasks, times) = match part.split_once("(x") {
            Some((t, n)) => (t, n.trim_end_matches(')').parse::<usize>().ok()?),
            None => (part, 1),
        };
        at += times;
        if node < at {
            return tasks.trim().parse().ok();
        }
    }
    None
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
        /// This rank's index among the ranks sharing its machine (MPI's shared-memory split).
        local_rank: usize,
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
        fn broadcast_u8(&self, buf: &mut [u8]) {
            let comm = self.comm.lock().unwrap();
            comm.process_at_rank(0).broadcast_into(buf);
        }
        fn local_rank(&self) -> usize {
            self.local_rank
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
        if let Some(launched) = super::launched_world(&super::process_env) {
            if comm.size() as usize != launched {
                anyhow::bail!(
                    "the launcher started {launched} processes, but MPI joined {} of them: \
                     this incubator's MPI is not the launcher's (mpirun and the library from \
                     the same Open MPI, or srun with its MPI plugin: `srun --mpi=list`)",
                    comm.size()
                );
            }
        }
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
        let local_rank = comm.split_shared(comm.rank()).rank() as usize;
        let world = World {
            comm: Mutex::new(comm),
            ranks,
            local_rank,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn each_rank_takes_its_share_of_the_cores_by_the_launchers_count() {
        // mpirun: the ranks on this machine share it
        let mpirun = [("OMPI_COMM_WORLD_LOCAL_SIZE", "4")];
        assert_eq!(threads_per_rank(16, 8, &env_of(&mpirun)), 4);
        // srun: what the job gave each task, never more than the machine has
        let srun = [("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_CPUS_PER_TASK", "8")];
        assert_eq!(threads_per_rank(16, 2, &env_of(&srun)), 8);
        assert_eq!(threads_per_rank(4, 2, &env_of(&srun)), 4);
        // srun without --cpus-per-task: the tasks on this node, from Slurm's per-node list
        let nodes = [
            ("SLURM_STEP_NUM_TASKS", "7"),
            ("SLURM_STEP_TASKS_PER_NODE", "2(x3),1"),
            ("SLURM_NODEID", "3"),
        ];
        assert_eq!(threads_per_rank(16, 7, &env_of(&nodes)), 16);
        let second = [
            ("SLURM_STEP_NUM_TASKS", "7"),
            ("SLURM_STEP_TASKS_PER_NODE", "2(x3),1"),
            ("SLURM_NODEID", "1"),
        ];
        assert_eq!(threads_per_rank(16, 7, &env_of(&second)), 8);
        // nothing known: the whole world on this machine; never zero threads
        assert_eq!(threads_per_rank(2, 3, &env_of(&[])), 1);
        assert_eq!(slurm_tasks_on_node("2(x3),1", 4), None);
        assert_eq!(slurm_tasks_on_node("garbage(xz)", 0), None);
    }

    #[test]
    fn the_launchers_count_makes_ranks_or_a_refusal_that_says_how_to_fix_it() {
        let alone: &[(&str, &str)] = &[];
        assert_eq!(ranks_to_join(&env_of(alone), true, true), Ok(None));
        assert_eq!(ranks_to_join(&env_of(alone), false, true), Ok(None));
        let one = [("OMPI_COMM_WORLD_SIZE", "1")];
        assert_eq!(ranks_to_join(&env_of(&one), false, true), Ok(None));
        // mpirun, srun --mpi=pmi2, srun --mpi=pmix
        let mpirun = [("OMPI_COMM_WORLD_SIZE", "2")];
        let pmi2 = [("PMI_SIZE", "3"), ("SLURM_STEP_NUM_TASKS", "3")];
        let pmix = [("PMIX_RANK", "0"), ("SLURM_STEP_NUM_TASKS", "4")];
        for (env, n) in [(&mpirun[..], 2), (&pmi2[..], 3), (&pmix[..], 4)] {
            assert_eq!(ranks_to_join(&env_of(env), true, true), Ok(Some(n)));
            // a build without the feature names the feature and the packages
            let e = ranks_to_join(&env_of(env), false, true).unwrap_err();
            assert!(
                e.contains(&format!("one of {n} processes"))
                    && e.contains("--features mpi")
                    && e.contains("libopenmpi-dev"),
                "{e}"
            );
        }
        // srun without an MPI plugin: refused whatever the build
        let bare = [("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_PROCID", "1")];
        for with_mpi in [true, false] {
            let e = ranks_to_join(&env_of(&bare), with_mpi, true).unwrap_err();
            assert!(
                e.contains("without an MPI plugin") && e.contains("srun --mpi=pmix"),
                "{e}"
            );
        }
        // a batch script's own shell (no step) and a one-task step train alone
        let batch = [("SLURM_NTASKS", "2"), ("SLURM_PROCID", "0")];
        assert_eq!(ranks_to_join(&env_of(&batch), true, true), Ok(None));
        // only the training commands train as ranks, whoever started them
        for env in [&mpirun[..], &bare[..]] {
            let e = ranks_to_join(&env_of(env), true, false).unwrap_err();
            assert!(e.contains("only the training commands"), "{e}");
        }
        assert_eq!(ranks_to_join(&env_of(&one), true, false), Ok(None));
        let single = [("SLURM_STEP_NUM_TASKS", "1")];
        assert_eq!(ranks_to_join(&env_of(&single), false, true), Ok(None));
    }
}
