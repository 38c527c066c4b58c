//! Every configuration in examples/ loads and validates, and the plugins it names, with its
//! options, are accepted by the registry its libraries make (this build's libraries stand in
//! for the release paths the examples give).

mod common;
use common::*;
use incubator_core::config::RunConfig;
use incubator_core::plugin::Registry;

#[test]
fn every_example_config_is_valid_with_its_plugins_and_options() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let mut cfg = RunConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        cfg.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        cfg.plugins.libraries = cfg
            .plugins
            .libraries
            .iter()
            .map(|lib| {
                let file = lib.file_name().unwrap().to_str().unwrap();
                let krate = file
                    .trim_start_matches("lib")
                    .trim_end_matches(".so")
                    .replace('_', "-");
                assert!(
                    lib.to_str().unwrap().contains("target/release/"),
                    "{}: {lib:?}",
                    path.display()
                );
                library(&krate)
            })
            .collect();
        let (registry, _) =
            Registry::for_run(&cfg.plugins, &incubator_deep_incubation::register, &[])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        registry
            .check_selection(&cfg.plugins)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 10, "{checked} examples");
}
