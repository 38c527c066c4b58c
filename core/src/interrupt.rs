//! Graceful stop: SIGTERM, SIGINT and SIGUSR1 ask every running stage to finish its current
//! step, write its resumable state and stop; a second signal ends the process at once.
//!
//! SIGTERM is what Slurm sends on preemption, `scancel` and `scontrol requeue`; SIGUSR1 is the
//! time-limit warning our batch scripts ask for (`--signal=B:USR1@...`), after which the stage
//! command requeues its own job. Training code only asks [`requested`]; nothing here knows
//! about stages or Slurm.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    /// The time-limit warning: stop, and requeue the job if there is one.
    Usr1,
}

impl StopSignal {
    /// The signal's number on Linux.
    pub fn number(self) -> u8 {
        match self {
            StopSignal::Term => 15,
            StopSignal::Int => 2,
            StopSignal::Usr1 => 10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
            StopSignal::Usr1 => "SIGUSR1",
        }
    }
}

struct Flags {
    /// Set by the first signal; a second signal finds it set and exits.
    stopping: Arc<AtomicBool>,
    /// The first signal's number.
    which: Arc<AtomicUsize>,
}

fn flags() -> &'static Flags {
    static FLAGS: OnceLock<Flags> = OnceLock::new();
    FLAGS.get_or_init(|| Flags {
        stopping: Arc::new(AtomicBool::new(false)),
        which: Arc::new(AtomicUsize::new(0)),
    })
}

/// Installs the handlers (once per process; later calls do nothing).
pub fn install() -> std::io::Result<()> {
    // the outcome of the one registration, handed to every caller (io::Error is not Clone)
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| register().map_err(|e| e.to_string()))
        .clone()
        .map_err(std::io::Error::other)
}

#[cfg(unix)]
fn register() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    use signal_hook::flag;
    let f = flags();
    for sig in [SIGTERM, SIGINT, SIGUSR1] {
        // Registered first, so it runs first: on the second signal the flag is already set
        // and the process exits with the shell's code for death by that signal.
        flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&f.stopping))?;
        flag::register(sig, Arc::clone(&f.stopping))?;
        flag::register_usize(sig, Arc::clone(&f.which), sig as usize)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn register() -> std::io::Result<()> {
    Ok(())
}

/// Stops this process as if `signal` had reached it (it reached another rank training the
/// same stage: they all stop together). A signal already received stays the one named.
pub fn adopt(signal: StopSignal) {
    let f = flags();
    if !f.stopping.swap(true, Ordering::SeqCst) {
        f.which.store(signal.number() as usize, Ordering::SeqCst);
    }
}

/// The stop every rank of several acts on (`crate::collective`): a signal that reached any
/// rank stops them all (SIGUSR1's requeue first, then SIGTERM, then SIGINT), and each adopts
/// it. `count` is summed over the ranks in the same collective. One process alone: its own.
pub fn agree_ranks(local: Option<StopSignal>, count: u64) -> (Option<StopSignal>, u64) {
    let ranks = crate::collective::current();
    if ranks.ranks().world == 1 {
        return (local, count);
    }
    const ORDER: [StopSignal; 3] = [StopSignal::Usr1, StopSignal::Term, StopSignal::Int];
    let mut votes = [count, 0, 0, 0];
    if let Some(i) = local.and_then(|s| ORDER.iter().position(|o| *o == s)) {
        votes[1 + i] = 1;
    }
    ranks.sum_u64(&mut votes);
    let agreed = ORDER
        .iter()
        .zip(&votes[1..])
        .find(|(_, v)| **v > 0)
        .map(|(s, _)| *s);
    if let Some(signal) = agreed {
        adopt(signal);
        AGREED.store(true, Ordering::SeqCst);
    }
    (agreed, votes[0])
}

/// Set once the ranks have agreed on a stop: every rank then leaves by that stop.
static AGREED: AtomicBool = AtomicBool::new(false);

/// Whether this rank's stop is one all ranks agreed on ([`agree_ranks`]), so that they can
/// leave together; a signal that reached this rank alone, before any agreement, is not.
pub fn agreed() -> bool {
    AGREED.load(Ordering::SeqCst)
}

/// The signal that asked this process to stop, if one did.
pub fn requested() -> Option<StopSignal> {
    let f = flags();
    if !f.stopping.load(Ordering::SeqCst) {
        return None;
    }
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGUSR1};
        Some(match f.which.load(Ordering::SeqCst) as i32 {
            SIGINT => StopSignal::Int,
            SIGUSR1 => StopSignal::Usr1,
            _ => StopSignal::Term,
        })
    }
    #[cfg(not(unix))]
    Some(StopSignal::Term)
}
