//! The reference plugins and the template are written against the SDK alone
//! (`incubator_core::sdk`): what a researcher copies never reaches into the engine, so engine
//! changes do not break plugins out of tree.

use std::path::{Path, PathBuf};

fn plugin_crates() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let mut crates: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    crates
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The lines (numbered from 1) that name an engine path not under `incubator_core::sdk`.
fn past_the_sdk(text: &str) -> Vec<(usize, &str)> {
    let mut hits = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("incubator_core::") {
            rest = &rest[at + "incubator_core::".len()..];
            if !rest.starts_with("sdk::") && !rest.starts_with("sdk;") {
                hits.push((n + 1, line.trim()));
            }
        }
    }
    hits
}

/// Every path into the engine a plugin's sources name goes through `incubator_core::sdk`.
#[test]
fn plugins_import_only_the_sdk() {
    let crates = plugin_crates();
    assert!(crates.len() >= 9, "{crates:?}");
    let mut offences = Vec::new();
    for krate in &crates {
        let mut files = Vec::new();
        sources(&krate.join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in past_the_sdk(&text) {
                offences.push(format!("{}:{n}: {line}", file.display()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "plugins reach past the SDK:\n{}",
        offences.join("\n")
    );
}

/// The engine is a plugin's only dependency (it re-exports serde, schemars and dfdx), so no
/// other crate, and no second copy of one the engine links, can reach a plugin's code.
#[test]
fn plugins_depend_on_the_engine_alone() {
    for krate in plugin_crates() {
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(krate.join("Cargo.toml")).unwrap()).unwrap();
        let deps: Vec<&String> = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| d.keys().collect())
            .unwrap_or_default();
        assert_eq!(deps, ["incubator-core"], "{}", krate.display());
    }
}

/// The checker above finds what it is for.
#[test]
fn the_check_sees_an_engine_path() {
    let text = "use incubator_core::sdk::*;\nuse incubator_core::model::Network;\nlet x = incubator_core::sdkish::f();\n";
    assert_eq!(
        past_the_sdk(text),
        [
            (2, "use incubator_core::model::Network;"),
            (3, "let x = incubator_core::sdkish::f();")
        ]
    );
}
