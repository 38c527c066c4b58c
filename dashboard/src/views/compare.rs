//! Comparison: the assembled model against the E2E baseline (the paper's table: accuracy,
//! compute with the meta model included, wall time), per configuration over its seeds with the
//! paired difference's 95% interval, and per run; then the configurations' hyperparameters
//! side by side, differences first. Every number comes from `incubator_compare`, as in the
//! engine's and the sweep's reports.

use super::format::{duration, percent};
use crate::configs::table;
use crate::store::Run;
use crate::view::View;
use crate::workspace::{Group, Workspace};
use egui::{RichText, Ui};
use incubator_compare::{over_seeds, Comparison, MeanCi, MeanSd, OverSeeds};

#[derive(Default)]
pub struct CompareView;

impl View for CompareView {
    fn id(&self) -> &'static str {
        "compare"
    }

    fn title(&self) -> &'static str {
        "Compare"
    }

    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    fn restore(&mut self, _state: serde_json::Value) {}

    fn describe(&self, ws: &Workspace) -> serde_json::Value {
        let configurations: Vec<serde_json::Value> = ws
            .groups()
            .iter()
            .filter_map(|g| {
                let (n, stats) = group_stats(g)?;
                Some(serde_json::json!({"name": g.name, "seeds": n, "diff_top1": stats.diff_top1}))
            })
            .collect();
        serde_json::json!({ "configurations": configurations })
    }

    fn ui(&mut self, ui: &mut Ui, ws: &Workspace) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            let groups = ws.groups();
            if groups.iter().any(|g| g.runs.len() > 1) {
                ui.heading("Per configuration, over seeds");
                ui.label(
                    RichText::new(
                        "mean ± sd; the difference is assembled minus E2E of the same seed with its 95% interval (Student's t); * marks an interval that excludes zero",
                    )
                    .weak(),
                );
                per_configuration(ui, &groups);
                ui.add_space(12.0);
            }
            ui.heading("Deep Model Assembling vs end-to-end, per run");
            per_run(ui, &ws.runs);
            ui.add_space(12.0);
            ui.heading("Hyperparameters");
            // one column per configuration: its seeds differ in nothing else
            let firsts: Vec<&Run> = groups.iter().map(|g| g.runs[0]).collect();
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            hyperparameters(ui, &firsts, &names);
        });
    }
}

/// The finished runs' comparisons of a configuration and their statistics.
fn group_stats(g: &Group) -> Option<(usize, OverSeeds)> {
    let cs: Vec<Comparison> = g.runs.iter().filter_map(|r| r.comparison()).collect();
    (!cs.is_empty()).then(|| (cs.len(), over_seeds(&cs)))
}

fn per_configuration(ui: &mut Ui, groups: &[Group]) {
    egui::Grid::new("per-configuration")
        .striped(true)
        .show(ui, |ui| {
            for h in [
                "configuration",
                "seeds",
                "assembled test top-1",
                "E2E test top-1",
                "difference [95% CI]",
                "method GFLOP",
                "E2E GFLOP",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for g in groups {
                ui.label(&g.name);
                let Some((n, s)) = group_stats(g) else {
                    ui.label(format!("0 of {}", g.runs.len()));
                    ui.end_row();
                    continue;
                };
                ui.label(format!("{n} of {}", g.runs.len()));
                ui.label(pct_sd(&s.assembled_top1));
                ui.label(s.e2e_top1.as_ref().map(pct_sd).unwrap_or("-".into()));
                ui.label(
                    s.diff_top1
                        .as_ref()
                        .map(MeanCi::points)
                        .unwrap_or("-".into()),
                );
                ui.label(format!("{:.0}", s.method_gflop.mean));
                ui.label(
                    s.e2e_gflop
                        .map(|g| format!("{:.0}", g.mean))
                        .unwrap_or("-".into()),
                );
                ui.end_row();
            }
        });
}

/// `91.20 ± 0.35 %` (no ± for one seed).
pub fn pct_sd(m: &MeanSd) -> String {
    format!("{} %", m.percent())
}

fn per_run(ui: &mut Ui, runs: &[Run]) {
    egui::Grid::new("comparison").striped(true).show(ui, |ui| {
        for h in [
            "run",
            "assembled test top-1",
            "E2E test top-1",
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
        let dash = || "-".to_string();
        for run in runs {
            ui.label(&run.name);
            match run.comparison() {
                None => {
                    ui.label("(stages still running)");
                }
                Some(c) => {
                    ui.label(percent(c.assembled_top1));
                    ui.label(c.e2e.map(|e| percent(e.top1)).unwrap_or_else(dash));
                    ui.label(
                        c.diff_top1()
                            .map(|d| format!("{:+.2} points", 100.0 * d))
                            .unwrap_or_else(dash),
                    );
                    ui.label(format!("{:.0}", c.method_gflop));
                    ui.label(
                        c.e2e
                            .map(|e| format!("{:.0}", e.gflop))
                            .unwrap_or_else(dash),
                    );
                    ui.label(
                        c.cost_ratio()
                            .map(|r| format!("{r:.2}x"))
                            .unwrap_or_else(dash),
                    );
                    ui.label(duration(c.method_wall_s));
                    ui.label(duration(c.method_parallel_wall_s));
                    ui.label(c.e2e.map(|e| duration(e.wall_s)).unwrap_or_else(dash));
                }
            }
            ui.end_row();
        }
    });
}

fn hyperparameters(ui: &mut Ui, runs: &[&Run], names: &[&str]) {
    egui::Grid::new("hparams").striped(true).show(ui, |ui| {
        ui.label(RichText::new("key").strong());
        for n in names {
            ui.label(RichText::new(*n).strong());
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
