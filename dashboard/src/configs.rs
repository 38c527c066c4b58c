//! Runs' configurations side by side: every key of the TOML, the ones whose values differ first
//! (what sets runs apart is what a reader needs to see).

use crate::store::Run;
use std::collections::{BTreeMap, BTreeSet};

/// `section.key` -> value of every scalar in a TOML config, as shown.
pub fn flatten(config: &str) -> BTreeMap<String, String> {
    incubator_compare::settings(config)
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

/// Rows of the hyperparameter table of `runs`: (key, value per run, whether they differ), keys
/// whose values differ first.
pub fn table(runs: &[&Run]) -> Vec<(String, Vec<String>, bool)> {
    let configs: Vec<BTreeMap<String, String>> = runs
        .iter()
        .map(|r| r.config.as_deref().map(flatten).unwrap_or_default())
        .collect();
    let keys: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    let mut rows: Vec<(String, Vec<String>, bool)> = keys
        .into_iter()
        .map(|k| {
            let values: Vec<String> = configs
                .iter()
                .map(|c| c.get(k).cloned().unwrap_or_else(|| "-".into()))
                .collect();
            let differs = values.iter().any(|v| v != &values[0]);
            (k.clone(), values, differs)
        })
        .collect();
    rows.sort_by_key(|(k, _, differs)| (!differs, k.clone()));
    rows
}

/// Per run, the keys whose values differ between `runs` (seed excluded when `but_seed`: the
/// seeds of one configuration differ in nothing else).
pub fn differing(runs: &[&Run], but_seed: bool) -> Vec<Vec<(String, String)>> {
    let rows = table(runs);
    (0..runs.len())
        .map(|i| {
            rows.iter()
                .filter(|(k, _, differs)| *differs && !(but_seed && k == "seed"))
                .map(|(k, values, _)| (k.clone(), values[i].clone()))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_keys_come_first() {
        let mut a = Run::new("a");
        a.config = Some("seed = 0\n[optim]\nbase_lr = 0.01\nbatch_size = 32\n".into());
        let mut b = Run::new("b");
        b.config = Some("seed = 0\n[optim]\nbase_lr = 0.02\nbatch_size = 32\n".into());
        let rows = table(&[&a, &b]);
        assert_eq!(
            differing(&[&a, &b], true)[1],
            [("optim.base_lr".to_string(), "0.02".to_string())]
        );
        assert_eq!(rows[0].0, "optim.base_lr");
        assert!(rows[0].2);
        assert_eq!(rows[0].1, vec!["0.01", "0.02"]);
        assert!(rows
            .iter()
            .any(|(k, v, d)| k == "seed" && !d && v == &vec!["0", "0"]));
    }
}
