//! One engine build whatever cargo is asked to build. libincubator_core.so has no hash in its
//! file name, and its symbols carry the build hashes of the libraries it links, which depend
//! on their enabled features. If building one package (the binary alone, a plugin, a test
//! with its dev-dependencies, an out-of-tree plugin crate) enabled other features in the
//! engine's libraries than another build, it would overwrite the engine with one that the
//! plugins built before cannot load. core/Cargo.toml pins those features; this checks that
//! every selection resolves the engine's libraries alike.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// `package version` -> enabled features, for the packages `cargo tree` lists.
fn features(select: &[&str], edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let host = String::from_utf8(
        Command::new(env!("CARGO"))
            .args(["-vV"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
    .expect("cargo -vV names the host");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none", "--no-dedupe"])
        .args(["--format", "{p}|{f}", "--target", &host, "-e", edges])
        .args(select)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let Some((package, feats)) = line.split_once('|') else {
            continue;
        };
        // "name v1.2.3 (path)" -> "name v1.2.3"
        let package: String = package.split(" (").next().unwrap().trim().to_string();
        map.entry(package).or_default().extend(
            feats
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        );
    }
    map
}

#[test]
fn every_build_selection_resolves_the_engines_libraries_alike() {
    let engine = features(&["-p", "incubator-core"], "normal,build");
    assert!(engine.keys().any(|p| p.starts_with("dfdx ")), "{engine:?}");
    for select in [
        &["-p", "incubator-core"][..],
        &["-p", "incubator"][..],
        &["-p", "incubator-template"][..],
        &["--workspace"][..],
    ] {
        for edges in ["normal,build", "normal,build,dev"] {
            let other = features(select, edges);
            for (package, want) in &engine {
                let got = &other[package];
                assert_eq!(
                    got, want,
                    "{package}: `cargo build {}` ({edges}) enables {:?} beyond the engine's own build; pin them in core/Cargo.toml",
                    select.join(" "),
                    got.difference(want).collect::<Vec<_>>()
                );
            }
        }
    }
}
