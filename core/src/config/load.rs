//! Reading a configuration: TOML files laid over the defaults and over each other, single keys
//! set over the result (a sweep's grid point), errors that name the key by its path.

use super::{ConfigError, RunConfig};
use std::path::Path;

impl RunConfig {
    /// Parses TOML over the defaults (a section may give only some of its keys); unknown keys
    /// and bad values are reported with their path (`optim.batch_sise`).
    pub fn from_toml(text: &str, origin: &str) -> Result<RunConfig, ConfigError> {
        let user: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })?;
        let mut merged: toml::Table =
            toml::from_str(&RunConfig::default().to_toml()).expect("defaults parse");
        merge(&mut merged, user);
        serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner().to_string();
            let message = if inner.starts_with("unknown field") {
                format!("unknown key `{key}`: {inner}; remove it or fix its spelling")
            } else {
                format!("bad value for `{key}`: {inner}")
            };
            ConfigError::Parse {
                path: origin.into(),
                message,
            }
        })
    }

    pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
        RunConfig::load_layers(&[path])
    }

    /// A run directory's stored `config.toml`. A run made before validation splits existed
    /// has no `data.val_fraction` / `data.val_per_class` and evaluated every epoch on the test
    /// split: it keeps doing so (its checkpoints were trained on all its training images), where
    /// a new config without the keys gets the new default.
    pub fn load_stored(path: &Path) -> Result<RunConfig, ConfigError> {
        let mut cfg = RunConfig::load(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).unwrap_or_default();
        let data = table.get("data").and_then(|d| d.as_table());
        let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
        if !has("val_fraction") && !has("val_per_class") {
            cfg.data.val_fraction = 0.0;
            cfg.data.val_per_class = 0;
        }
        Ok(cfg)
    }

    /// Config files laid over each other, later ones overriding earlier ones key by key (e.g.
    /// a recipe, then a file with only a `[plugins]` section): `-c recipe.toml -c dgl.toml`.
    /// Plugin library paths are relative to the file that names them.
    pub fn load_layers<P: AsRef<Path>>(paths: &[P]) -> Result<RunConfig, ConfigError> {
        RunConfig::load_layers_with(paths, &[])
    }

    /// [`RunConfig::load_layers`], then single keys set over the result: `("model.depth", 16)`,
    /// a sweep's grid point. A key that names no setting is refused like one in a file.
    pub fn load_layers_with<P: AsRef<Path>>(
        paths: &[P],
        overrides: &[(String, toml::Value)],
    ) -> Result<RunConfig, ConfigError> {
        let mut merged = toml::Table::new();
        let mut origins = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?;
            let mut layer: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: origin.clone(),
                message: e.to_string(),
            })?;
            let base = path.parent().unwrap_or(Path::new("."));
            if let Some(toml::Value::Array(libs)) = layer
                .get_mut("plugins")
                .and_then(|p| p.as_table_mut())
                .and_then(|p| p.get_mut("libraries"))
            {
                for lib in libs.iter_mut() {
                    if let toml::Value::String(s) = lib {
                        let mut p = std::path::PathBuf::from(&*s);
                        if p.is_relative() {
                            p = base.join(p);
                        }
                        let p = std::fs::canonicalize(&p).unwrap_or(p);
                        *s = p.display().to_string();
                    }
                }
            }
            merge(&mut merged, layer);
            origins.push(origin);
        }
        let mut origins_with_keys = origins.join(" + ");
        for (key, value) in overrides {
            set_dotted(&mut merged, key, value.clone())?;
            origins_with_keys.push_str(&format!(" + {key} = {value}"));
        }
        let text = toml::to_string(&merged).expect("a parsed table serialises");
        RunConfig::from_toml(&text, &origins_with_keys)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }
}

/// Sets `a.b.c = value` in `table`, creating the tables on the way.
fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ConfigError> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|l| !l.is_empty()).ok_or_else(|| {
        ConfigError::Invalid(format!("`{key}` is not a config key (like `model.depth`)"))
    })?;
    let mut at = table;
    for (i, part) in parts.iter().enumerate() {
        let entry = at
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry.as_table_mut().ok_or_else(|| {
            ConfigError::Invalid(format!(
                "cannot set `{key}`: `{}` is a value, not a section",
                parts[..=i].join(".")
            ))
        })?;
    }
    let value = match (at.get(last), value) {
        // a table merges into the section it replaces, as a config layer would
        (Some(toml::Value::Table(old)), toml::Value::Table(new)) => {
            let mut t = old.clone();
            merge(&mut t, new);
            toml::Value::Table(t)
        }
        (_, v) => v,
    };
    at.insert(last.to_string(), value);
    Ok(())
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
