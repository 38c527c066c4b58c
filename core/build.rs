//! Fingerprints this build of the engine for the plugin handshake (`src/plugin/abi.rs`): the
//! compiler (`rustc -vV`), the profile, the enabled features and a hash of the engine's own
//! sources. A plugin compiled against a different engine build is refused before any Rust call.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

#[path = "build/fingerprint.rs"]
mod fingerprint;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let verbose = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let field = |key: &str| {
        verbose
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or("unknown")
            .trim()
            .to_string()
    };
    let rustc_id = format!("{} ({})", field("release:"), field("commit-hash:"));
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase()))
        .collect();
    features.sort();
    let profile = format!(
        "{} (opt-level {}, debug-assertions {})",
        std::env::var("PROFILE").unwrap_or_default(),
        std::env::var("OPT_LEVEL").unwrap_or_default(),
        std::env::var("CARGO_CFG_DEBUG_ASSERTIONS").is_ok()
    );

    // The folder being compiled, read when the script runs: `env!` would be the folder the
    // script was compiled in, which a checkout moved or copied with its target/ no longer is.
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let sources = fingerprint::sources_hash(Path::new(&root))
        .unwrap_or_else(|e| panic!("cannot fingerprint the engine's sources: {e}"));
    let mut hash = Sha256::new();
    for part in [&verbose, &features.join(","), &profile, &sources] {
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let build_id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();

    println!("cargo:rustc-env=INCUBATOR_RUSTC={rustc_id}");
    println!("cargo:rustc-env=INCUBATOR_FEATURES={}", features.join(","));
    println!("cargo:rustc-env=INCUBATOR_PROFILE={profile}");
    println!("cargo:rustc-env=INCUBATOR_BUILD_ID={build_id}");
    println!("cargo:rustc-env=INCUBATOR_SOURCES_HASH={sources}");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=events/src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=events/Cargo.toml");
    println!("cargo:rerun-if-changed=build");
}
