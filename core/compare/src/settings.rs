//! A run's settings as comparable values: every scalar of its `config.toml` by dotted key
//! (`optim.base_lr`). What sets runs apart (the dashboard's hover and hyperparameter table) and
//! what TensorBoard's HParams table lists are both read from here.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    Number(f64),
    Text(String),
    Bool(bool),
    /// Arrays and dates, as their TOML text.
    Other(String),
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Number(n) => write!(f, "{n}"),
            Setting::Text(t) | Setting::Other(t) => f.write_str(t),
            Setting::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Every scalar of a TOML config by its dotted key; empty when the text is not TOML.
pub fn settings(config_toml: &str) -> BTreeMap<String, Setting> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, Setting>) {
        let setting = match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
                return;
            }
            toml::Value::Integer(i) => Setting::Number(*i as f64),
            toml::Value::Float(x) => Setting::Number(*x),
            toml::Value::Boolean(b) => Setting::Bool(*b),
            toml::Value::String(s) => Setting::Text(s.clone()),
            other => Setting::Other(other.to_string()),
        };
        out.insert(prefix.to_string(), setting);
    }
    let mut out = BTreeMap::new();
    if let Ok(t) = config_toml.parse::<toml::Table>() {
        walk("", &toml::Value::Table(t), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_become_dotted_and_keep_their_type() {
        let s = settings("seed = 3\n[optim]\nbase_lr = 0.001\nschedule = \"deit\"\n[e2e]\nenabled = true\n[data]\nsizes = [1, 2]\n");
        assert_eq!(s["seed"], Setting::Number(3.0));
        assert_eq!(s["optim.base_lr"].to_string(), "0.001");
        assert_eq!(s["optim.schedule"], Setting::Text("deit".into()));
        assert_eq!(s["e2e.enabled"], Setting::Bool(true));
        assert_eq!(s["data.sizes"].to_string(), "[1, 2]");
        assert!(settings("not toml [").is_empty());
    }
}
