//! One writer per stage: a stage holds an advisory lock on `RUN/stages/<stage>/lock` for as
//! long as it runs, so a second process on the same stage (a requeued job while the old one
//! still runs, two terminals) is refused before it writes anything.
//!
//! The lock is the kernel's (`flock`, which Linux's NFS client maps to a POSIX lock on the
//! server), so it goes away with its process however that process dies: a crashed holder can
//! never block the stage. The file also says who holds it (host, pid, since when), for the
//! refusal message; a record left by a process that died is reported as a stale lock taken
//! over. The file is never deleted, only emptied on release: deleting it would let two
//! processes lock two different files of the same name.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// Unix time the lock was taken.
    pub since: f64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on host {}", self.pid, self.host)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("stage {stage} is already running in {holder} (since {since}; lock {path}). Two processes must not train one stage in one run directory: wait for it to finish, or stop it (kill {pid}) and run this again to resume")]
    Held {
        stage: String,
        holder: Holder,
        since: String,
        pid: u32,
        path: PathBuf,
    },
    #[error("stage {stage} is locked by another process (lock {path}) that has not said who it is yet; try again in a moment")]
    HeldUnknown { stage: String, path: PathBuf },
    #[error("cannot lock stage {stage} ({path}): {source}")]
    Io {
        stage: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A held stage lock; released (and its record emptied) when dropped.
pub struct StageLock {
    file: File,
    path: PathBuf,
    /// A record found at acquisition: a holder that died without releasing.
    pub stale: Option<Holder>,
}

/// Takes the lock at `path` for `stage`, or says who holds it.
pub fn acquire(path: &Path, stage: &str, host: &str) -> Result<StageLock, LockError> {
    let io = |source| LockError::Io {
        stage: stage.into(),
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(match read_holder(&mut file) {
                Some(holder) => LockError::Held {
                    stage: stage.into(),
                    since: describe_time(holder.since),
                    pid: holder.pid,
                    holder,
                    path: path.into(),
                },
                None => LockError::HeldUnknown {
                    stage: stage.into(),
                    path: path.into(),
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let stale = read_holder(&mut file);
    let me = Holder {
        host: host.into(),
        pid: std::process::id(),
        since: now(),
    };
    let record = serde_json::to_string(&me).expect("a Holder serialises") + "\n";
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(record.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(StageLock {
        file,
        path: path.into(),
        stale,
    })
}

impl StageLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StageLock {
    fn drop(&mut self) {
        // Emptied while still locked, so nobody reads a record of a holder that has gone.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The process holding the lock at `path` now, if any (a record left by a dead holder is not
/// returned: its lock went with it).
pub fn holder_at(path: &Path) -> Option<Holder> {
    let mut file = File::open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => read_holder(&mut file),
        Err(TryLockError::Error(_)) => None,
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn describe_time(since: f64) -> String {
    let ago = (now() - since).max(0.0);
    if ago < 120.0 {
        format!("{ago:.0} s ago")
    } else if ago < 7200.0 {
        format!("{:.0} min ago", ago / 60.0)
    } else {
        format!("{:.1} h ago", ago / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stages/meta/lock");
        let first = acquire(&path, "meta", "node-a").unwrap();
        assert_eq!(first.stale, None);
        // A second open file description conflicts with the first even in one process,
        // exactly as a second process does.
        let err = acquire(&path, "meta", "node-b").err().expect("refused");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {} on host node-a", std::process::id()))
                && msg.contains("already running")
                && msg.contains("meta"),
            "{msg}"
        );
        drop(first);
        let again = acquire(&path, "meta", "node-b").unwrap();
        assert_eq!(again.stale, None, "a clean release leaves no record");
    }

    #[test]
    fn a_record_left_by_a_dead_holder_is_reported_as_stale_and_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let dead = Holder {
            host: "node-z".into(),
            pid: 999_999,
            since: 1.0,
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = acquire(&path, "e2e", "node-a").unwrap();
        assert_eq!(lock.stale, Some(dead));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("\"pid\":{}", std::process::id())),
            "{text}"
        );
    }
}
