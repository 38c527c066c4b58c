//! The check every plugin crate runs in its tests: the plugin compiled in and the same plugin
//! loaded from its library train a small run to bit-identical weights and losses. It is what
//! proves, for each plugin, that loading shares the engine's dfdx (one tensor-id counter)
//! and that nothing in the plugin depends on how it was linked.

use crate::config::{with_keys, TINY_TOML};
use incubator_core::config::RunConfig;
use incubator_core::events::Event;
use incubator_core::plugin::Registrar;
use incubator_core::stages::{pipeline, Engine, PluginSources};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The library cargo built for crate `crate_name` next to the running test binary
/// (`target/<profile>/deps/lib<crate_name>.so`, the cdylib of a `["rlib", "cdylib"]` crate).
pub fn library_next_to_test(crate_name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("a directory");
    deps.join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

/// What one run produced: every model file's bytes and every stage's training losses.
#[derive(Debug, PartialEq)]
pub struct RunOutput {
    pub dir: PathBuf,
    pub models: BTreeMap<String, Vec<u8>>,
    pub losses: BTreeMap<String, Vec<f64>>,
}

/// Runs the pipeline of `plugins_toml` (a `[plugins]` section naming the plugin's items) over
/// [`TINY_TOML`] twice, in this process: once with `register` as the only built-in, once with
/// no built-ins and `library` loaded. `companions` are libraries both runs load for the items
/// the plugin does not provide (e.g. `deep-incubation`'s meta design). Returns both outputs;
/// they must be equal.
pub fn compiled_in_vs_library(
    register: fn(&mut Registrar),
    library: &Path,
    companions: &[PathBuf],
    plugins_toml: &str,
    dir: &Path,
) -> anyhow::Result<(RunOutput, RunOutput)> {
    let base = with_keys(TINY_TOML, &[("e2e.enabled", "false")]);
    let mut compiled = RunConfig::from_toml(&format!("{base}{plugins_toml}"), "compiled-in")?;
    compiled.plugins.libraries = companions.to_vec();
    let mut loaded = compiled.clone();
    loaded.plugins.builtins = false;
    loaded.plugins.libraries.push(library.to_path_buf());

    let run = |cfg: &RunConfig, name: &str, builtins: &dyn Fn(&mut Registrar)| {
        let root = dir.join(name);
        let mut engine = Engine::open(
            &root,
            Some(cfg),
            incubator_core::run_dir::OpenMode::Start,
            &PluginSources {
                builtins,
                extra: Vec::new(),
            },
        )?;
        engine.show_progress = false;
        pipeline::run(&engine, 1)?;
        collect(&root)
    };
    let a = run(&compiled, "compiled-in", &register)?;
    let b = run(&loaded, "library", &|_: &mut Registrar| {})?;
    anyhow::ensure!(
        a.models.len() == b.models.len() && !a.models.is_empty(),
        "the runs saved different sets of models"
    );
    Ok((a, b))
}

fn collect(root: &Path) -> anyhow::Result<RunOutput> {
    let mut models = BTreeMap::new();
    for stage in fs_err::read_dir(root.join("stages"))? {
        let stage = stage?.path();
        for file in fs_err::read_dir(&stage)? {
            let file = file?.path();
            let name = file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            // state.safetensors also records wall-clock time; weights are in the others
            if name.ends_with(".safetensors") && name != "state.safetensors" {
                let stage = stage.file_name().unwrap_or_default().to_string_lossy();
                models.insert(format!("{stage}/{name}"), fs_err::read(&file)?);
            }
        }
    }
    let mut losses: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for record in incubator_core::telemetry::jsonl::read_events(root)? {
        if let Event::TrainStep { loss, .. } = record.event {
            losses.entry(record.stage.slug()).or_default().push(loss);
        }
    }
    Ok(RunOutput {
        dir: root.to_path_buf(),
        models,
        losses,
    })
}

/// Panics, naming the first difference, unless both runs saved the same model files and logged
/// the same loss at every step.
pub fn assert_same(compiled: &RunOutput, loaded: &RunOutput) {
    let names = |r: &RunOutput| r.models.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(compiled),
        names(loaded),
        "the runs saved different models"
    );
    for (name, bytes) in &compiled.models {
        assert!(
            &loaded.models[name] == bytes,
            "{name} differs between the plugin compiled in and loaded from its library"
        );
    }
    assert_eq!(compiled.losses, loaded.losses, "the losses differ");
}

/// The check of a plugin crate's test: its library (next to the test binary) against
/// `register` compiled in, with `deep-incubation`'s library for what the plugin does not
/// provide; panics on any difference ([`assert_same`]). Returns both runs for more checks.
pub fn check_plugin(
    register: fn(&mut Registrar),
    crate_name: &str,
    plugins_toml: &str,
    dir: &Path,
) -> (RunOutput, RunOutput) {
    let reference = "incubator-deep-incubation";
    let companions: Vec<PathBuf> = (crate_name != reference)
        .then(|| library_next_to_test(reference))
        .into_iter()
        .collect();
    let (compiled, loaded) = compiled_in_vs_library(
        register,
        &library_next_to_test(crate_name),
        &companions,
        plugins_toml,
        dir,
    )
    .unwrap();
    assert_same(&compiled, &loaded);
    (compiled, loaded)
}
