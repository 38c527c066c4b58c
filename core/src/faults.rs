//! Deliberate crashes for the crash-consistency tests: `INCUBATOR_CRASH_AT` makes this process
//! kill itself with SIGKILL (no unwinding, no destructors: what `kill -9` or the OOM killer
//! does) at a chosen point, so a test can interrupt a stage at a point that a timed external
//! `kill -9` would only hit by luck:
//!
//! - `step:N`: right after the N-th optimizer step this process takes (counting from 1);
//! - `write:N`: inside the N-th file this process writes atomically, once half of the
//!   temporary file is on disk and before the rename;
//! - `term:N`: not a crash: right after the N-th optimizer step the process sends itself
//!   SIGTERM, which takes the real path of a graceful stop (handler, state, exit) at a known
//!   step.
//! - `eval:N`: the same SIGTERM right after the N-th evaluation batch this process takes, so
//!   a stop lands inside an evaluation; `list:N`: after the N-th directory an image-folder
//!   listing reads.
//!
//! Unset (always, outside those tests) it costs one atomic load per step and per file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq)]
enum CrashAt {
    Step(u64),
    Write(u64),
    Term(u64),
    Eval(u64),
    List(u64),
}

fn plan() -> Option<CrashAt> {
    static PLAN: OnceLock<Option<CrashAt>> = OnceLock::new();
    *PLAN.get_or_init(|| {
        let v = std::env::var("INCUBATOR_CRASH_AT").ok()?;
        let parsed = match v.split_once(':') {
            Some(("step", n)) => n.parse().ok().map(CrashAt::Step),
            Some(("write", n)) => n.parse().ok().map(CrashAt::Write),
            Some(("term", n)) => n.parse().ok().map(CrashAt::Term),
            Some(("eval", n)) => n.parse().ok().map(CrashAt::Eval),
            Some(("list", n)) => n.parse().ok().map(CrashAt::List),
            _ => None,
        };
        if parsed.is_none() {
            eprintln!(
                "warning: INCUBATOR_CRASH_AT={v:?} is not step:N, write:N, term:N, eval:N or list:N; ignored"
            );
        }
        parsed
    })
}

static STEPS: AtomicU64 = AtomicU64::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);
static EVAL_BATCHES: AtomicU64 = AtomicU64::new(0);
static LISTED: AtomicU64 = AtomicU64::new(0);

/// Called after every optimizer step.
pub fn after_step() {
    let (at, kill) = match plan() {
        Some(CrashAt::Step(n)) => (n, true),
        Some(CrashAt::Term(n)) => (n, false),
        _ => return,
    };
    if STEPS.fetch_add(1, Ordering::SeqCst) + 1 == at {
        if kill {
            die();
        }
        terminate_self();
    }
}

/// Called after every evaluation batch.
pub fn after_eval_batch() {
    if let Some(CrashAt::Eval(n)) = plan() {
        term_at(&EVAL_BATCHES, n);
    }
}

/// Called after every directory an image-folder listing reads.
pub fn after_dir_listed() {
    if let Some(CrashAt::List(n)) = plan() {
        term_at(&LISTED, n);
    }
}

/// Counts one more event on `counter`; the `n`-th sends this process SIGTERM.
fn term_at(counter: &AtomicU64, n: u64) {
    if counter.fetch_add(1, Ordering::SeqCst) + 1 == n {
        terminate_self();
    }
}

fn terminate_self() {
    #[cfg(unix)]
    // SAFETY: raise(3) delivers SIGTERM to this thread before it returns; the handler
    // only stores to atomics.
    unsafe {
        libc::raise(libc::SIGTERM);
    }
}

/// Called once per atomic write; true when this write is the one to die in.
pub fn crash_in_this_write() -> bool {
    matches!(plan(), Some(CrashAt::Write(n)) if WRITES.fetch_add(1, Ordering::SeqCst) + 1 == n)
}

/// Ends the process at once, as SIGKILL does.
pub fn die() -> ! {
    #[cfg(unix)]
    // SAFETY: kill(2) on our own pid has no memory effects; SIGKILL cannot be caught.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}
