//! Accuracy against cost, the paper's cost figures: top-1 of the assembled model and of the E2E
//! baseline against training compute (or wall time), one point per configuration with error
//! bars of one standard deviation across its seeds. Hovering a point names the configuration,
//! its numbers and the settings that set it apart from the other configurations.

use super::compare::pct_sd;
use crate::configs::differing;
use crate::store::Run;
use crate::view::{from_state, to_state, View};
use crate::workspace::Workspace;
use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoints, Points};
use incubator_compare::{mean_sd, Comparison, MeanSd};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostAxis {
    /// Training compute, GFLOP (the meta model included for the method).
    Compute,
    /// Wall time with the method's stages one after another.
    Wall,
    /// Wall time with one machine per module.
    WallSideBySide,
}

impl CostAxis {
    fn label(self) -> &'static str {
        match self {
            CostAxis::Compute => "training compute (GFLOP)",
            CostAxis::Wall => "wall time, one machine (s)",
            CostAxis::WallSideBySide => "wall time, a machine per module (s)",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CostSettings {
    pub x: CostAxis,
    pub log_x: bool,
}

impl Default for CostSettings {
    fn default() -> Self {
        CostSettings {
            x: CostAxis::Compute,
            log_x: false,
        }
    }
}

#[derive(Default)]
pub struct CostView {
    pub settings: CostSettings,
    /// Where the last frame drew each mark on screen: (configuration, e2e, position).
    drawn: Vec<(String, bool, egui::Pos2)>,
    /// The mark whose tooltip the last frame showed.
    hovered: Option<(String, bool)>,
}

/// One point of the plot: a configuration's method or baseline, over its finished seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub configuration: String,
    pub e2e: bool,
    pub x: MeanSd,
    pub top1: MeanSd,
    /// What sets this configuration apart (`key = value`).
    pub differs: Vec<(String, String)>,
}

/// The marks of every configuration with a finished run.
pub fn marks(ws: &Workspace, axis: CostAxis) -> Vec<Mark> {
    let groups = ws.groups();
    let firsts: Vec<&Run> = groups.iter().map(|g| g.runs[0]).collect();
    let differs = differing(&firsts, true);
    let mut out = Vec::new();
    for (g, differs) in groups.iter().zip(differs) {
        let cs: Vec<Comparison> = g.runs.iter().filter_map(|r| r.comparison()).collect();
        if cs.is_empty() {
            continue;
        }
        let col = |f: &dyn Fn(&Comparison) -> Option<f64>| -> Option<MeanSd> {
            let xs: Vec<f64> = cs.iter().filter_map(f).collect();
            (!xs.is_empty()).then(|| mean_sd(&xs))
        };
        let method_x = col(&|c| {
            Some(match axis {
                CostAxis::Compute => c.method_gflop,
                CostAxis::Wall => c.method_wall_s,
                CostAxis::WallSideBySide => c.method_parallel_wall_s,
            })
        });
        let e2e_x = col(&|c| {
            c.e2e.map(|e| match axis {
                CostAxis::Compute => e.gflop,
                CostAxis::Wall | CostAxis::WallSideBySide => e.wall_s,
            })
        });
        if let (Some(x), Some(top1)) = (method_x, col(&|c| Some(c.assembled_top1))) {
            out.push(Mark {
                configuration: g.name.clone(),
                e2e: false,
                x,
                top1,
                differs: differs.clone(),
            });
        }
        if let (Some(x), Some(top1)) = (e2e_x, col(&|c| c.e2e.map(|e| e.top1))) {
            out.push(Mark {
                configuration: g.name.clone(),
                e2e: true,
                x,
                top1,
                differs: differs.clone(),
            });
        }
    }
    out
}

const METHOD: Color32 = Color32::from_rgb(90, 170, 255);
const E2E: Color32 = Color32::from_rgb(240, 140, 60);

impl View for CostView {
    fn id(&self) -> &'static str {
        "cost"
    }

    fn title(&self) -> &'static str {
        "Accuracy vs cost"
    }

    fn state(&self) -> serde_json::Value {
        to_state(&self.settings)
    }

    fn restore(&mut self, state: serde_json::Value) {
        from_state(&mut self.settings, state);
    }

    fn describe(&self, ws: &Workspace) -> serde_json::Value {
        let points: Vec<serde_json::Value> = marks(ws, self.settings.x)
            .iter()
            .map(|m| {
                serde_json::json!({
                    "configuration": m.configuration, "e2e": m.e2e, "seeds": m.top1.n,
                    "x": m.x.mean, "top1": m.top1.mean, "top1_sd": m.top1.sd,
                })
            })
            .collect();
        let drawn: Vec<serde_json::Value> = self
            .drawn
            .iter()
            .map(
                |(c, e2e, p)| serde_json::json!({"configuration": c, "e2e": e2e, "at": [p.x, p.y]}),
            )
            .collect();
        serde_json::json!({
            "x": self.settings.x, "points": points, "drawn": drawn, "hovered": self.hovered,
        })
    }

    fn ui(&mut self, ui: &mut Ui, ws: &Workspace) {
        self.drawn.clear();
        self.hovered = None;
        let s = &mut self.settings;
        ui.horizontal(|ui| {
            ui.label("x:");
            for axis in [CostAxis::Compute, CostAxis::Wall, CostAxis::WallSideBySide] {
                ui.selectable_value(&mut s.x, axis, axis.label());
            }
            ui.checkbox(&mut s.log_x, "log x");
        });
        let marks = marks(ws, s.x);
        if marks.is_empty() {
            ui.label("No run has finished its comparison yet (the assembled model is needed).");
            return;
        }
        ui.label(
            RichText::new(
                "circles: Deep Model Assembling (assembled model), squares: E2E baseline; bars: ±1 sd across seeds; hover a point for its settings",
            )
            .weak(),
        );
        let tx = |v: f64| if s.log_x { v.max(1e-12).log10() } else { v };
        let log_x = s.log_x;
        // room on the right for the points' names
        let xs: Vec<f64> = marks.iter().map(|m| tx(m.x.mean)).collect();
        let (lo, hi) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-9);
        let mut plot = Plot::new("accuracy-vs-cost")
            .include_x(lo - pad)
            .include_x(hi + 3.0 * pad)
            .legend(Legend::default())
            // the tooltip below names marks; the plot's own coordinate label would name bar ends
            .show_x(false)
            .show_y(false)
            .x_axis_label(s.x.label())
            .y_axis_label("test top-1 (%)");
        if log_x {
            plot = plot.x_axis_formatter(|m, _| format!("{:.3}", 10f64.powf(m.value)));
        }
        let response = plot.show(ui, |plot_ui| {
            for e2e in [false, true] {
                let (colour, shape, name) = if e2e {
                    (E2E, MarkerShape::Square, "E2E baseline")
                } else {
                    (METHOD, MarkerShape::Circle, "assembled (method)")
                };
                let mine: Vec<&Mark> = marks.iter().filter(|m| m.e2e == e2e).collect();
                let pts: Vec<[f64; 2]> = mine
                    .iter()
                    .map(|m| [tx(m.x.mean), 100.0 * m.top1.mean])
                    .collect();
                plot_ui.points(
                    Points::new(name, PlotPoints::from(pts))
                        .shape(shape)
                        .radius(5.0)
                        .filled(true)
                        .color(colour),
                );
                // few enough points to name them: the configuration beside each
                let named = marks.len() <= 16;
                for m in mine {
                    if named {
                        let at = egui_plot::PlotPoint::new(tx(m.x.mean), 100.0 * m.top1.mean);
                        plot_ui.text(
                            egui_plot::Text::new(
                                "",
                                at,
                                RichText::new(format!("   {}", m.configuration)).size(13.0),
                            )
                            .anchor(egui::Align2::LEFT_CENTER)
                            .color(colour),
                        );
                    }
                    for seg in error_bars(m, &tx) {
                        plot_ui.line(Line::new("", PlotPoints::from(seg.to_vec())).color(colour));
                    }
                }
            }
            plot_ui.pointer_coordinate()
        });
        let to_screen = |x: f64, y: f64| {
            response
                .transform
                .position_from_point(&egui_plot::PlotPoint::new(x, y))
        };
        self.drawn = marks
            .iter()
            .map(|m| {
                let at = to_screen(tx(m.x.mean), 100.0 * m.top1.mean);
                (m.configuration.clone(), m.e2e, at)
            })
            .collect();
        // the tooltip names the mark nearest the pointer, if it is close on screen
        if let Some(pointer) = response.inner {
            let at = to_screen(pointer.x, pointer.y);
            let near = marks
                .iter()
                .map(|m| (m, to_screen(tx(m.x.mean), 100.0 * m.top1.mean).distance(at)))
                .filter(|(_, d)| *d < 12.0)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((m, _)) = near {
                self.hovered = Some((m.configuration.clone(), m.e2e));
                // at once, as a plot's own hover label (a widget's tooltip waits for the
                // pointer to rest)
                egui::containers::Tooltip::for_widget(&response.response)
                    .at_pointer()
                    .gap(12.0)
                    .show(|ui| tooltip(ui, m, s.x));
            }
        }
    }
}

/// The ±1 sd bars of a mark, vertical (top-1) and horizontal (cost), as line segments.
fn error_bars(m: &Mark, tx: &dyn Fn(f64) -> f64) -> Vec<[[f64; 2]; 2]> {
    let (x, y) = (m.x.mean, 100.0 * m.top1.mean);
    let mut out = Vec::new();
    if m.top1.sd.is_finite() {
        let d = 100.0 * m.top1.sd;
        out.push([[tx(x), y - d], [tx(x), y + d]]);
    }
    if m.x.sd.is_finite() {
        out.push([[tx(x - m.x.sd), y], [tx(x + m.x.sd), y]]);
    }
    out
}

fn tooltip(ui: &mut Ui, m: &Mark, axis: CostAxis) {
    ui.label(RichText::new(&m.configuration).strong());
    ui.label(if m.e2e {
        "E2E baseline"
    } else {
        "assembled model (method)"
    });
    ui.label(format!(
        "top-1 {} over {} seed(s)",
        pct_sd(&m.top1),
        m.top1.n
    ));
    ui.label(format!("{}: {:.1}", axis.label(), m.x.mean));
    if m.differs.is_empty() {
        ui.label(RichText::new("same settings as every other configuration").weak());
    }
    for (k, v) in &m.differs {
        ui.label(format!("{k} = {v}"));
    }
}
