//! The README's configuration reference must show the real defaults: a reader copies from it.

use incubator_core::config::RunConfig;

#[test]
fn readme_config_block_lists_every_default() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Configuration reference")
        .expect("README has a configuration reference");
    let block = readme[start..]
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block follows the heading");
    let shown: toml::Table = toml::from_str(block).expect("the README block is valid TOML");
    let real: toml::Table = toml::from_str(&RunConfig::default().to_toml()).unwrap();
    for (section, value) in &real {
        match (value, shown.get(section)) {
            (toml::Value::Table(keys), Some(toml::Value::Table(shown_keys))) => {
                for (key, v) in keys {
                    assert_eq!(
                        Some(v),
                        shown_keys.get(key),
                        "README's [{section}] {key} differs from the default"
                    );
                }
            }
            (v, shown_v) => assert_eq!(
                Some(v),
                shown_v,
                "README's {section} differs from the default"
            ),
        }
    }
}
