//! The hash of the engine's sources that goes into its build fingerprint (`core/build.rs`),
//! shared with the test that checks it (`core/src/plugin/abi.rs`).

use sha2::{Digest, Sha256};
use std::path::Path;

/// What is hashed, relative to the crate's folder.
pub const TREES: [&str; 2] = ["src", "events/src"];
pub const FILES: [&str; 3] = ["Cargo.toml", "events/Cargo.toml", "build.rs"];

/// The sources of the crate at `root`, hashed with their paths relative to it (so a checkout
/// moved elsewhere hashes the same, and an edited one differently). Refuses a root without
/// them rather than fingerprinting nothing.
pub fn sources_hash(root: &Path) -> Result<String, String> {
    let mut hash = Sha256::new();
    let mut files = 0;
    for dir in TREES {
        files += hash_tree(root, &root.join(dir), &mut hash)?;
    }
    for file in FILES {
        let bytes = std::fs::read(root.join(file))
            .map_err(|e| format!("{}: {e}", root.join(file).display()))?;
        hash.update(file.as_bytes());
        hash.update(&bytes);
        files += 1;
    }
    if files <= FILES.len() {
        return Err(format!("no sources under {}", root.display()));
    }
    Ok(hex(&hash.finalize()))
}

fn hash_tree(root: &Path, dir: &Path, hash: &mut Sha256) -> Result<usize, String> {
    let read = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut entries: Vec<_> = read.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    let mut files = 0;
    for path in entries {
        if path.is_dir() {
            files += hash_tree(root, &path, hash)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            hash.update(rel.to_string_lossy().as_bytes());
            hash.update(std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?);
            files += 1;
        }
    }
    Ok(files)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
