//! `incubator plugin new NAME`: a new plugin crate in the workspace's `plugins/`, copied from
//! `plugins/template` with its names changed. It must live in this workspace: a plugin links
//! the very engine library the binary uses (see core/src/plugin/abi.rs).

use std::path::{Path, PathBuf};

const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../plugins/template/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../plugins/template/src/lib.rs"),
    ),
    (
        "tests/library.rs",
        include_str!("../../plugins/template/tests/library.rs"),
    ),
];

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        anyhow::bail!(
            "plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter (e.g. feature-kd)"
        );
    }
    Ok(())
}

fn camel_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The template's text with its names replaced by `name`'s.
pub fn render(text: &str, name: &str) -> String {
    text.replace("incubator-template", &format!("incubator-{name}"))
        .replace(
            "incubator_template",
            &format!("incubator_{}", name.replace('-', "_")),
        )
        .replace("\"template\"", &format!("\"{name}\""))
        .replace("\\\"template\\\"", &format!("\\\"{name}\\\""))
        .replace("`template`", &format!("`{name}`"))
        .replace("Template", &camel_case(name))
}

pub fn new_plugin(name: &str, workspace: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("[workspace]") || !workspace.join("plugins").is_dir() {
        anyhow::bail!(
            "{} is not the incubator workspace (no Cargo.toml with [workspace] and plugins/ beside it); run this at the repository root or pass --workspace: a plugin is built in the engine's workspace so that it links the same engine library",
            workspace.display()
        );
    }
    let dir = workspace.join("plugins").join(name);
    if dir.exists() {
        anyhow::bail!("{} already exists; choose another name", dir.display());
    }
    for (file, text) in FILES {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        std::fs::write(&path, render(text, name))?;
    }
    Ok(dir)
}
