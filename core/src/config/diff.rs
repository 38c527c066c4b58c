//! How two run configurations differ: every key, for the messages that refuse a config, and
//! whether they train the same thing.

use super::RunConfig;

/// Whether a stage trained under `theirs` trained what `ours` describes: the settings that say
/// where things are or how a process runs (a dataset moved to another `data.path`, loader
/// threads, checkpoint frequency, Slurm resources), not what is trained, may differ.
pub fn same_training(theirs: &RunConfig, ours: &RunConfig) -> bool {
    let mut t = theirs.clone();
    t.data.path = ours.data.path.clone();
    t.data.cache_dir = ours.data.cache_dir.clone();
    t.data.workers = ours.data.workers;
    t.data.prefetch = ours.data.prefetch;
    t.checkpoint = ours.checkpoint.clone();
    t.slurm = ours.slurm.clone();
    t == *ours
}

/// Every setting that differs between `a` (stored) and `b` (given), as `key: A there, B here`.
pub fn differences(a: &RunConfig, b: &RunConfig) -> Vec<String> {
    let (ta, tb): (toml::Table, toml::Table) = (
        toml::from_str(&a.to_toml()).unwrap_or_default(),
        toml::from_str(&b.to_toml()).unwrap_or_default(),
    );
    let mut out = Vec::new();
    diff_tables("", &ta, &tb, &mut out);
    if out.is_empty() {
        out.push("the settings differ".into());
    }
    out
}

fn diff_tables(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let key = format!("{prefix}{k}");
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(sa)), Some(toml::Value::Table(sb))) => {
                diff_tables(&format!("{key}."), sa, sb, out)
            }
            (va, vb) if va != vb => {
                let show = |v: Option<&toml::Value>| v.map_or("unset".into(), |v| v.to_string());
                out.push(format!("{key} is {} there, {} here", show(va), show(vb)));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_every_nested_key() {
        let a = RunConfig::default();
        let mut b = a.clone();
        b.seed = 3;
        b.model.depth = Some(12);
        b.optim.batch_size = 7;
        let d = differences(&a, &b).join("; ");
        for key in ["seed is 0 there, 3 here", "model.depth", "optim.batch_size"] {
            assert!(d.contains(key), "{d}");
        }
    }
}
