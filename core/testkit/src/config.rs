//! The tiny run's config, and edits of a config that fail loudly when they do not apply (a
//! silent `str::replace` that finds nothing leaves a test testing the unedited config).

/// A run small enough for a test on 2 cores that still learns the embedded MNIST subset: the
/// integration tests' configuration (a d32 ViT of 4 blocks, 1024 training images). It is
/// `examples/tiny.toml`, so the documented example and the tested run are one file.
pub const TINY_TOML: &str = include_str!("../../../examples/tiny.toml");

/// `text` (a TOML config) with dotted keys set to TOML values: `("e2e.enabled", "false")`,
/// `("model.divided_depths", "[2, 2]")`. Panics if the text or a value is not TOML, or if a
/// key's section is neither in the config nor a known one to add (a misspelt section would
/// otherwise be a new, ignored table until the config refuses it).
pub fn with_keys(text: &str, keys: &[(&str, &str)]) -> String {
    let mut doc: toml::Table = toml::from_str(text).expect("a TOML config");
    for (key, value) in keys {
        let parsed: toml::Table = toml::from_str(&format!("v = {value}"))
            .unwrap_or_else(|e| panic!("{key} = {value} is not a TOML value: {e}"));
        let (path, leaf) = match key.rsplit_once('.') {
            Some((path, leaf)) => (path.split('.').collect::<Vec<_>>(), leaf),
            None => (Vec::new(), *key),
        };
        let mut table = &mut doc;
        for section in path {
            table = table
                .get_mut(section)
                .and_then(toml::Value::as_table_mut)
                .unwrap_or_else(|| panic!("{key}: the config has no [{section}] section"));
        }
        table.insert(leaf.to_string(), parsed["v"].clone());
    }
    toml::to_string(&doc).expect("a table serialises")
}

/// `text` with `from` replaced by `to`; panics if `from` is not in it.
pub fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{from:?} is not in the text to edit; the test would run unedited:\n{text}"
    );
    text.replace(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_set_and_a_missing_section_is_refused() {
        let edited = with_keys(TINY_TOML, &[("e2e.enabled", "false"), ("seed", "7")]);
        let doc: toml::Table = toml::from_str(&edited).unwrap();
        assert_eq!(doc["e2e"]["enabled"].as_bool(), Some(false));
        assert_eq!(doc["seed"].as_integer(), Some(7));
        let typo = std::panic::catch_unwind(|| with_keys(TINY_TOML, &[("e2f.enabled", "false")]));
        assert!(typo.is_err());
        let missing = std::panic::catch_unwind(|| replaced(TINY_TOML, "no such text", "x"));
        assert!(missing.is_err());
    }
}
