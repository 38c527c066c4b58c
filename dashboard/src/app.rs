//! The dashboard application: runs fed by their sources every frame, three views over them.

use crate::series::XAxis;
use crate::source::Source;
use crate::store::{Metric, Run};
use crate::views;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Pipeline,
    Curves,
    Compare,
}

/// What the curves view shows, and how.
#[derive(Clone, Debug)]
pub struct CurveSettings {
    pub metrics: BTreeSet<Metric>,
    /// Debiased EMA weight, 0 = raw.
    pub smoothing: f64,
    pub show_raw: bool,
    pub log_y: bool,
    pub x_axis: XAxis,
    /// Stage slugs hidden from the plots (`e2e`, `incubate-2`, ...).
    pub hidden_stages: BTreeSet<String>,
    /// Run names hidden from the plots.
    pub hidden_runs: BTreeSet<String>,
    /// Reduce each line to min/max buckets of the plot's width (off: every point is drawn;
    /// the frame-time benchmark's baseline).
    pub downsample: bool,
}

impl Default for CurveSettings {
    fn default() -> Self {
        CurveSettings {
            metrics: [Metric::Loss, Metric::TestTop1].into_iter().collect(),
            smoothing: 0.6,
            show_raw: true,
            log_y: false,
            x_axis: XAxis::Step,
            hidden_stages: BTreeSet::new(),
            hidden_runs: BTreeSet::new(),
            downsample: true,
        }
    }
}

pub struct DashboardApp {
    pub runs: Vec<Run>,
    sources: Vec<Box<dyn Source>>,
    pub tab: Tab,
    pub curves: CurveSettings,
    pub smoothing_cache: views::curves::SmoothCache,
    /// A line for the status bar (an export's path, a source's problem).
    pub message: String,
    pub frames: u64,
    config_checked: f64,
    /// Where the screenshot callback leaves the image for the next frame to save.
    screenshot: std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<egui::ColorImage>>>>,
}

impl DashboardApp {
    pub fn new(sources: Vec<Box<dyn Source>>) -> DashboardApp {
        DashboardApp {
            runs: sources.iter().map(|s| Run::new(s.name())).collect(),
            sources,
            tab: Tab::Curves,
            curves: CurveSettings::default(),
            smoothing_cache: Default::default(),
            message: String::new(),
            frames: 0,
            config_checked: f64::NEG_INFINITY,
            screenshot: Default::default(),
        }
    }

    /// Runs given directly (tests, benchmarks): no sources.
    pub fn with_runs(runs: Vec<Run>) -> DashboardApp {
        let mut app = DashboardApp::new(Vec::new());
        app.runs = runs;
        app
    }

    /// Takes in what every source has; returns whether anything changed.
    pub fn pull(&mut self, now: f64) -> bool {
        let mut changed = false;
        let check_config = now - self.config_checked > 2.0;
        for (run, source) in self.runs.iter_mut().zip(&mut self.sources) {
            for r in source.poll() {
                run.apply(&r);
                changed = true;
            }
            if run.config.is_none() && check_config {
                run.config = source.config();
            }
        }
        if check_config {
            self.config_checked = now;
        }
        changed
    }

    /// Problems reported by the sources.
    pub fn problems(&self) -> Vec<String> {
        self.sources.iter().filter_map(|s| s.problem()).collect()
    }

    /// One frame of the whole UI (separate from `eframe::App` so tests and benchmarks can
    /// drive it with a bare `egui::Context::run_ui`).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.frames += 1;
        let now = ctx.input(|i| i.time);
        if self.pull(now) {
            ctx.request_repaint();
        }
        // live data: look again soon even when the user does nothing
        ctx.request_repaint_after(std::time::Duration::from_millis(250));

        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("incubator");
                ui.separator();
                for (tab, label) in [
                    (Tab::Pipeline, "Pipeline"),
                    (Tab::Curves, "Curves"),
                    (Tab::Compare, "Compare"),
                ] {
                    ui.selectable_value(&mut self.tab, tab, label);
                }
                ui.separator();
                if ui.button("Export CSV").clicked() {
                    self.message = crate::export::csv_of_visible(self);
                }
                if ui.button("Save PNG").clicked() {
                    let slot = self.screenshot.clone();
                    let repaint = ctx.clone();
                    let callback = egui::ScreenshotCallback::new(move |image| {
                        *slot.lock().expect("not poisoned") = Some(image);
                        repaint.request_repaint();
                    });
                    ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(callback));
                }
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                let records: usize = self.runs.iter().map(|r| r.records).sum();
                ui.label(format!("{} run(s), {records} records", self.runs.len()));
                for p in self.problems() {
                    ui.colored_label(egui::Color32::YELLOW, p);
                }
                if !self.message.is_empty() {
                    ui.label(&self.message);
                }
            });
        });
        let shot = self.screenshot.lock().expect("not poisoned").take();
        if let Some(image) = shot {
            self.message = crate::export::save_png(&image);
        }
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Pipeline => views::pipeline::show(ui, &self.runs),
            Tab::Curves => views::curves::show(ui, self),
            Tab::Compare => views::compare::show(ui, &self.runs),
        });
    }
}

impl eframe::App for DashboardApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    #[cfg(target_arch = "wasm32")]
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

/// A summary of what the app holds, as JSON (for tests, native or in the browser).
pub fn state_json(app: &DashboardApp) -> String {
    let runs: Vec<serde_json::Value> = app
        .runs
        .iter()
        .map(|r| {
            let stages: serde_json::Map<String, serde_json::Value> = r
                .stages
                .iter()
                .map(|(id, s)| {
                    (
                        id.slug(),
                        serde_json::json!({
                            "status": format!("{:?}", s.status).to_lowercase(),
                            "steps": s.loss.len(),
                            "progress": s.progress(),
                        }),
                    )
                })
                .collect();
            serde_json::json!({"name": r.name, "records": r.records, "stages": stages})
        })
        .collect();
    serde_json::json!({"runs": runs, "frames": app.frames, "tab": format!("{:?}", app.tab)})
        .to_string()
}
