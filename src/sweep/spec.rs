//! The sweep file: base config layers, seeds, and a grid of config keys.
//!
//! ```toml
//! [sweep]
//! title = "Depth"
//! configs = ["study-fashion-mnist.toml"]   # relative to this file, laid over each other
//! seeds = [0, 1, 2]
//!
//! [sweep.set]                               # keys every run of this sweep sets
//! "data.train_fraction" = 0.25
//!
//! [grid]
//! "model.depth" = [8, 16, 32]               # one key, several values
//!
//! [[grid.budget]]                           # several keys set together, one point each
//! label = "1x"
//! "meta.epochs" = 1
//! "e2e.epochs" = 3
//!
//! [[grid.strategy]]                         # a point may lay config files over the base
//! label = "dgl"
//! config = "dgl.toml"                       # (relative to this file)
//! ```
//!
//! Every combination of the axes' points is one configuration, run once per seed.

use incubator_core::config::{ConfigError, RunConfig};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct SweepSpec {
    pub file: PathBuf,
    pub title: String,
    /// Base config files, absolute, laid over each other in order.
    pub configs: Vec<PathBuf>,
    pub seeds: Vec<u64>,
    /// Keys set in every run, before the grid's.
    pub set: Vec<(String, toml::Value)>,
    pub axes: Vec<Axis>,
    /// The configuration whose E2E runs stand for those of configurations that train none
    /// (`e2e.enabled = false`), seed by seed: a strategy sweep trains one baseline per seed.
    pub baseline: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// The config key for a one-key axis, else the axis's own name.
    pub name: String,
    pub points: Vec<AxisPoint>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AxisPoint {
    pub label: String,
    /// Config files laid over the base ones (absolute), before any key is set.
    pub configs: Vec<PathBuf>,
    pub set: Vec<(String, toml::Value)>,
}

/// A configuration of the grid with everything it changes: files, then keys.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PointSettings {
    pub configs: Vec<PathBuf>,
    pub set: Vec<(String, toml::Value)>,
}

/// One configuration of the grid: a point on every axis.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GridPoint {
    /// `axis=label` pairs joined by `,` ("base" when the grid is empty): its directory name.
    pub name: String,
    /// (axis, label) per axis, in axis order.
    pub coords: Vec<(String, String)>,
    /// Every key the point sets, as TOML text (`model.depth = 16`), and its config files.
    pub set: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read sweep file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sweep file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl SweepSpec {
    pub fn load(path: &Path) -> Result<SweepSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.into(),
            source,
        })?;
        SweepSpec::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<SweepSpec, SpecError> {
        let bad = |message: String| SpecError::Invalid {
            path: path.into(),
            message,
        };
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let sweep = match doc.remove("sweep") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(bad("`sweep` must be a section".into())),
            None => return Err(bad("no [sweep] section (with configs and seeds)".into())),
        };
        let grid = match doc.remove("grid") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(bad("`grid` must be a section".into())),
            None => toml::Table::new(),
        };
        if let Some(k) = doc.keys().next() {
            return Err(bad(format!(
                "unknown section `{k}`: a sweep file has [sweep] and [grid]; run settings go in the config files it names"
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut title = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut configs = Vec::new();
        let mut seeds = Vec::new();
        let mut set = Vec::new();
        let mut baseline = None;
        for (key, value) in sweep {
            match (key.as_str(), value) {
                ("baseline", toml::Value::String(b)) => baseline = Some(b),
                ("set", toml::Value::Table(t)) => {
                    if t.contains_key("seed") {
                        return Err(bad(
                            "`sweep.set` sets `seed`: seeds go in `sweep.seeds`".into()
                        ));
                    }
                    set = t.into_iter().collect();
                }
                ("title", toml::Value::String(s)) => title = s,
                ("configs", toml::Value::Array(a)) => {
                    for v in a {
                        let s = v.as_str().ok_or_else(|| {
                            bad("`sweep.configs` lists config file paths (strings)".into())
                        })?;
                        configs.push(absolute(base, s));
                    }
                }
                ("seeds", toml::Value::Array(a)) => {
                    for v in a {
                        let s = v
                            .as_integer()
                            .and_then(|i| u64::try_from(i).ok())
                            .ok_or_else(|| {
                                bad(format!(
                                    "`sweep.seeds`: {v} is not a seed (a whole number, 0 or more)"
                                ))
                            })?;
                        if seeds.contains(&s) {
                            return Err(bad(format!("`sweep.seeds` lists {s} twice")));
                        }
                        seeds.push(s);
                    }
                }
                (k @ ("title" | "configs" | "seeds" | "set" | "baseline"), v) => {
                    return Err(bad(format!(
                        "`sweep.{k}` has the wrong type ({})",
                        v.type_str()
                    )))
                }
                (k, _) => {
                    return Err(bad(format!(
                    "unknown key `sweep.{k}`; the keys are title, configs, seeds, set and baseline"
                )))
                }
            }
        }
        if seeds.is_empty() {
            return Err(bad(
                "`sweep.seeds` is empty: give at least one seed (3 or more for intervals worth reading)".into(),
            ));
        }
        let mut axes = Vec::new();
        for (name, value) in grid {
            axes.push(axis(&name, value, base, bad)?);
        }
        let spec = SweepSpec {
            file: path.into(),
            title,
            configs,
            seeds,
            set,
            axes,
            baseline,
        };
        if let Some(b) = &spec.baseline {
            if !spec.points().iter().any(|(p, _)| &p.name == b) {
                return Err(bad(format!(
                    "`sweep.baseline` = {b:?} is not a configuration of the grid; they are: {}",
                    spec.points()
                        .iter()
                        .map(|(p, _)| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(spec)
    }

    /// Every configuration of the grid, the first axis varying slowest.
    pub fn points(&self) -> Vec<(GridPoint, PointSettings)> {
        let mut out: Vec<(Vec<(String, String)>, PointSettings)> =
            vec![(Vec::new(), PointSettings::default())];
        for axis in &self.axes {
            out = out
                .into_iter()
                .flat_map(|(coords, settings)| {
                    axis.points.iter().map(move |p| {
                        let mut c = coords.clone();
                        c.push((axis.name.clone(), p.label.clone()));
                        let mut s = settings.clone();
                        s.configs.extend(p.configs.iter().cloned());
                        s.set.extend(p.set.iter().cloned());
                        (c, s)
                    })
                })
                .collect();
        }
        out.into_iter()
            .map(|(coords, set)| {
                let name = if coords.is_empty() {
                    "base".to_string()
                } else {
                    coords
                        .iter()
                        .map(|(a, l)| format!("{a}={l}"))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let text = set
                    .configs
                    .iter()
                    .map(|c| format!("config {}", c.display()))
                    .chain(set.set.iter().map(|(k, v)| format!("{k} = {v}")))
                    .collect();
                (
                    GridPoint {
                        name,
                        coords,
                        set: text,
                    },
                    set,
                )
            })
            .collect()
    }

    /// The full config of one point and seed: the base files, the point's files, the
    /// sweep's keys, the point's keys, the seed. An unknown key or bad value names the point.
    pub fn config(&self, point: &PointSettings, seed: u64) -> Result<RunConfig, ConfigError> {
        let mut all = self.set.clone();
        all.extend(point.set.iter().cloned());
        all.push(("seed".into(), toml::Value::Integer(seed as i64)));
        let files: Vec<&PathBuf> = self.configs.iter().chain(&point.configs).collect();
        RunConfig::load_layers_with(&files, &all)
    }
}

fn absolute(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    let p = if p.is_relative() { base.join(p) } else { p };
    std::path::absolute(&p).unwrap_or(p)
}

fn axis(
    name: &str,
    value: toml::Value,
    base: &Path,
    bad: impl Fn(String) -> SpecError,
) -> Result<Axis, SpecError> {
    if name == "seed" {
        return Err(bad("`grid.seed`: seeds go in `sweep.seeds`".into()));
    }
    let toml::Value::Array(values) = value else {
        return Err(bad(format!(
            "`grid.{name}` must list its points: `\"{name}\" = [1, 2]`, or [[grid.{name}]] tables of keys set together"
        )));
    };
    if values.is_empty() {
        return Err(bad(format!("`grid.{name}` has no points")));
    }
    let mut points = Vec::new();
    for v in values {
        let point = match v {
            toml::Value::Table(mut t) => {
                let label = match t.remove("label") {
                    Some(toml::Value::String(s)) => s,
                    _ => {
                        return Err(bad(format!(
                            "every [[grid.{name}]] point needs a `label` (a short name for it)"
                        )))
                    }
                };
                let configs = match t.remove("config") {
                    None => Vec::new(),
                    Some(toml::Value::String(c)) => vec![absolute(base, &c)],
                    Some(toml::Value::Array(a)) => a
                        .iter()
                        .map(|v| v.as_str().map(|c| absolute(base, c)))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad(format!("point `{label}` of `grid.{name}`: `config` lists file paths (strings)")))?,
                    Some(_) => {
                        return Err(bad(format!(
                            "point `{label}` of `grid.{name}`: `config` is a file path or a list of them"
                        )))
                    }
                };
                if t.contains_key("seed") {
                    return Err(bad(format!(
                        "point `{label}` of `grid.{name}` sets `seed`: seeds go in `sweep.seeds`"
                    )));
                }
                AxisPoint {
                    label,
                    configs,
                    set: t.into_iter().collect(),
                }
            }
            toml::Value::Array(_) => {
                return Err(bad(format!("`grid.{name}`: a point cannot be a list")));
            }
            scalar => AxisPoint {
                label: match &scalar {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                configs: Vec::new(),
                set: vec![(name.to_string(), scalar)],
            },
        };
        let safe = !point.label.is_empty()
            && point
                .label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
        if !safe {
            return Err(bad(format!(
                "`grid.{name}`: the label {:?} names directories; use letters, digits, . _ - +",
                point.label
            )));
        }
        if points.iter().any(|p: &AxisPoint| p.label == point.label) {
            return Err(bad(format!(
                "`grid.{name}` has the point `{}` twice",
                point.label
            )));
        }
        points.push(point);
    }
    Ok(Axis {
        name: name.to_string(),
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SweepSpec, SpecError> {
        SweepSpec::parse(text, Path::new("/x/sweep.toml"))
    }

    #[test]
    fn grid_is_the_product_of_axes_with_linked_keys() {
        let s = parse(
            r#"
[sweep]
configs = ["base.toml"]
seeds = [0, 1]
[grid]
"model.depth" = [8, 16]
[[grid.budget]]
label = "1x"
"meta.epochs" = 1
"e2e.epochs" = 3
[[grid.budget]]
label = "2x"
"meta.epochs" = 2
"e2e.epochs" = 6
"#,
        )
        .unwrap();
        assert_eq!(s.configs, vec![PathBuf::from("/x/base.toml")]);
        let names: Vec<String> = s.points().into_iter().map(|(p, _)| p.name).collect();
        // axes in key order: budget, then model.depth
        assert_eq!(
            names,
            [
                "budget=1x,model.depth=8",
                "budget=1x,model.depth=16",
                "budget=2x,model.depth=8",
                "budget=2x,model.depth=16"
            ]
        );
        let (_, set) = &s.points()[3];
        assert_eq!(
            set.set
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["e2e.epochs=6", "meta.epochs=2", "model.depth=16"]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert!(err("[sweep]\nseeds = []\n").contains("`sweep.seeds` is empty"));
        assert!(err("[sweep]\nseeds = [1, 1]\n").contains("lists 1 twice"));
        assert!(err("[sweep]\nseeds = [0]\nseed = 3\n").contains("unknown key `sweep.seed`"));
        assert!(
            err("[sweep]\nseeds = [0]\n[model]\ndepth = 3\n").contains("unknown section `model`")
        );
        assert!(err("[sweep]\nseeds = [0]\n[grid]\nseed = [1]\n").contains("sweep.seeds"));
        assert!(err("[sweep]\nseeds = [0]\n[grid]\n\"a.b\" = 3\n").contains("must list its points"));
        assert!(err("[sweep]\nseeds = [0]\n[grid]\n\"a.b\" = [\"x/y\"]\n")
            .contains("names directories"));
        assert!(err("[sweep]\nseeds = [0]\n[[grid.b]]\n\"a.b\" = 1\n").contains("needs a `label`"));
        assert!(
            err("[sweep]\nseeds = [0]\n[[grid.b]]\nlabel = \"x\"\nconfig = 3\n")
                .contains("a file path")
        );
        assert!(err("[sweep]\nseeds = [0]\n[grid]\n\"a.b\" = [1, 1]\n").contains("twice"));
        let e = err("[sweep]\nseeds = [0]\nbaseline = \"a.b=3\"\n[grid]\n\"a.b\" = [1, 2]\n");
        assert!(
            e.contains("not a configuration of the grid; they are: a.b=1, a.b=2"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_config_key_in_the_grid_is_refused_by_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "[model]\ndepth = 4\n").unwrap();
        let file = dir.path().join("s.toml");
        let s = SweepSpec::parse(
            "[sweep]\nconfigs = [\"base.toml\"]\nseeds = [0]\n[grid]\n\"model.dpeth\" = [8]\n",
            &file,
        )
        .unwrap();
        let (_, set) = &s.points()[0];
        let e = s.config(set, 0).unwrap_err().to_string();
        assert!(e.contains("unknown key `model.dpeth`"), "{e}");
        assert!(e.contains("model.dpeth = 8"), "the point is named: {e}");
        let good = SweepSpec::parse(
            "[sweep]\nconfigs = [\"base.toml\"]\nseeds = [5]\n[sweep.set]\n\"model.embed_dim\" = 32\n\"model.depth\" = 2\n[grid]\n\"model.depth\" = [8]\n",
            &file,
        )
        .unwrap();
        let (_, set) = &good.points()[0];
        let c = good.config(set, 5).unwrap();
        // the grid's value wins over the sweep's fixed one, which wins over the file's
        assert_eq!(
            (c.model.depth, c.model.embed_dim, c.seed),
            (Some(8), Some(32), 5)
        );

        // a point's own config file, relative to the sweep file, lies over the base
        std::fs::write(
            dir.path().join("wide.toml"),
            "[model]\nembed_dim = 48\ndepth = 6\n",
        )
        .unwrap();
        let layered = SweepSpec::parse(
            "[sweep]\nconfigs = [\"base.toml\"]\nseeds = [0]\n[[grid.shape]]\nlabel = \"wide\"\nconfig = \"wide.toml\"\n[[grid.shape]]\nlabel = \"wide-deep\"\nconfig = \"wide.toml\"\n\"model.depth\" = 12\n",
            &file,
        )
        .unwrap();
        let points = layered.points();
        let wide = layered.config(&points[0].1, 0).unwrap();
        assert_eq!(
            (wide.model.embed_dim, wide.model.depth),
            (Some(48), Some(6))
        );
        let deep = layered.config(&points[1].1, 0).unwrap();
        assert_eq!(
            (deep.model.embed_dim, deep.model.depth),
            (Some(48), Some(12))
        );
        assert!(
            points[0].0.set[0].starts_with("config ") && points[0].0.set[0].ends_with("wide.toml")
        );
    }
}
