//! Comparison: the assembled model against the E2E baseline per run (the paper's table:
//! accuracy, compute with the meta model included, wall time), and the runs' hyperparameters
//! side by side, differences first.

use super::{duration, percent};
use crate::store::Run;
use egui::{RichText, Ui};
use std::collections::{BTreeMap, BTreeSet};

pub fn show(ui: &mut Ui, runs: &[Run]) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading("Deep Model Assembling vs end-to-end");
        egui::Grid::new("comparison").striped(true).show(ui, |ui| {
            for h in [
                "run",
                "assembled top-1",
                "E2E top-1",
                "difference",
                "method GFLOP",
                "E2E GFLOP",
                "cost ratio",
                "method wall",
                "side by side",
                "E2E wall",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for run in runs {
                ui.label(&run.name);
                match run.comparison() {
                    None => {
                        ui.label("(stages still running)");
                    }
                    Some(c) => {
                        ui.label(percent(c.method_top1));
                        ui.label(c.e2e_top1.map(percent).unwrap_or_else(|| "-".into()));
                        ui.label(
                            c.e2e_top1
                                .map(|e| format!("{:+.2} points", 100.0 * (c.method_top1 - e)))
                                .unwrap_or_else(|| "-".into()),
                        );
                        ui.label(format!("{:.0}", c.method_gflop));
                        ui.label(
                            c.e2e_gflop
                                .map(|g| format!("{g:.0}"))
                                .unwrap_or_else(|| "-".into()),
                        );
                        ui.label(
                            c.cost_ratio()
                                .map(|r| format!("{r:.2}x"))
                                .unwrap_or_else(|| "-".into()),
                        );
                        ui.label(duration(c.method_wall_s));
                        ui.label(duration(c.method_parallel_wall_s));
                        ui.label(c.e2e_wall_s.map(duration).unwrap_or_else(|| "-".into()));
                    }
                }
                ui.end_row();
            }
        });
        ui.add_space(12.0);
        ui.heading("Hyperparameters");
        hyperparameters(ui, runs);
    });
}

/// `section.key` -> value of every scalar in a TOML config.
pub fn flatten(config: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = config.parse::<toml::Table>() {
        walk("", &toml::Value::Table(v), &mut out);
    }
    out
}

/// Rows of the hyperparameter table: keys whose values differ between runs first.
pub fn table(runs: &[Run]) -> Vec<(String, Vec<String>, bool)> {
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

fn hyperparameters(ui: &mut Ui, runs: &[Run]) {
    egui::Grid::new("hparams").striped(true).show(ui, |ui| {
        ui.label(RichText::new("key").strong());
        for r in runs {
            ui.label(RichText::new(&r.name).strong());
        }
        ui.end_row();
        for (key, values, differs) in table(runs) {
            let key = if differs {
                RichText::new(key).strong()
            } else {
                RichText::new(key)
            };
            ui.label(key);
            for v in values {
                ui.label(v);
            }
            ui.end_row();
        }
    });
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
        let rows = table(&[a, b]);
        assert_eq!(rows[0].0, "optim.base_lr");
        assert!(rows[0].2);
        assert_eq!(rows[0].1, vec!["0.01", "0.02"]);
        assert!(rows
            .iter()
            .any(|(k, v, d)| k == "seed" && !d && v == &vec!["0", "0"]));
    }
}
