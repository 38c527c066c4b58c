//! The shape of Deep Model Assembling, per run: the meta model, then the K incubations side by
//! side, then the assembly and fine-tune; the E2E baseline beside them. Each stage shows its
//! status, progress, timing, accuracy, and where it ran.

use super::format::{duration, percent};
use crate::store::{Run, StageView, Status};
use crate::view::View;
use crate::workspace::Workspace;
use egui::{Color32, RichText, Ui};
use incubator_events::{StageId, StageKind};

pub fn status_colour(s: Status) -> Color32 {
    match s {
        Status::Running => Color32::from_rgb(80, 160, 255),
        Status::Finished => Color32::from_rgb(90, 200, 110),
        Status::Failed => Color32::from_rgb(235, 80, 80),
        Status::Interrupted => Color32::from_rgb(240, 170, 50),
        Status::Skipped => Color32::GRAY,
    }
}

/// The pipeline view: every run, or the one picked.
#[derive(Default)]
pub struct PipelineView {
    pub only: Option<String>,
}

impl View for PipelineView {
    fn id(&self) -> &'static str {
        "pipeline"
    }

    fn title(&self) -> &'static str {
        "Pipeline"
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "run": self.only })
    }

    fn restore(&mut self, state: serde_json::Value) {
        self.only = state["run"].as_str().map(str::to_string);
    }

    fn ui(&mut self, ui: &mut Ui, ws: &Workspace) {
        if ws.runs.len() > 1 {
            pick_run(ui, "pipeline-run", &mut self.only, &ws.runs, true);
        }
        let runs: Vec<&Run> = ws
            .runs
            .iter()
            .filter(|r| self.only.as_ref().is_none_or(|o| *o == r.name))
            .collect();
        show(ui, &runs);
    }
}

/// A choice of one run, or of all of them when `all` (`None`).
pub fn pick_run(ui: &mut Ui, id: &str, only: &mut Option<String>, runs: &[Run], all: bool) {
    ui.horizontal(|ui| {
        ui.label("run:");
        egui::ComboBox::from_id_salt(id)
            .selected_text(only.as_deref().unwrap_or("all"))
            .show_ui(ui, |ui| {
                if all {
                    ui.selectable_value(only, None, "all");
                }
                for r in runs {
                    ui.selectable_value(only, Some(r.name.clone()), &r.name);
                }
            });
    });
}

fn show(ui: &mut Ui, runs: &[&Run]) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        for run in runs {
            ui.heading(&run.name);
            ui.horizontal_top(|ui| {
                column(
                    ui,
                    "phase PT",
                    [run.stage(StageId::META)].into_iter().flatten(),
                    StageKind::Meta,
                );
                ui.label(RichText::new("->").size(20.0));
                column(ui, "phase MT", run.incubations(), StageKind::Incubate);
                ui.label(RichText::new("->").size(20.0));
                column(
                    ui,
                    "phase FT",
                    [run.stage(StageId::ASSEMBLE)].into_iter().flatten(),
                    StageKind::Assemble,
                );
                ui.separator();
                column(
                    ui,
                    "baseline",
                    [run.stage(StageId::E2E)].into_iter().flatten(),
                    StageKind::E2e,
                );
            });
            ui.separator();
        }
        if runs.is_empty() {
            ui.label("No runs yet.");
        }
    });
}

fn column<'a>(
    ui: &mut Ui,
    title: &str,
    stages: impl Iterator<Item = &'a StageView>,
    kind: StageKind,
) {
    ui.vertical(|ui| {
        ui.label(RichText::new(title).weak());
        let mut any = false;
        for s in stages {
            card(ui, s);
            any = true;
        }
        if !any {
            ui.group(|ui| {
                ui.label(format!("{} — not started", kind.as_str()));
            });
        }
    });
}

fn card(ui: &mut Ui, s: &StageView) {
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.5, status_colour(s.status)))
        .show(ui, |ui| {
            ui.set_min_width(190.0);
            ui.horizontal(|ui| {
                ui.label(RichText::new(s.id.slug()).strong());
                ui.label(
                    RichText::new(format!("{:?}", s.status).to_lowercase())
                        .color(status_colour(s.status)),
                );
            });
            ui.add(
                egui::ProgressBar::new(s.progress() as f32)
                    .desired_width(180.0)
                    .text(format!("epoch {:.1}/{}", s.epoch, s.epochs)),
            );
            let elapsed = s.wall_s.unwrap_or(s.updated - s.started);
            let mut timing = duration(elapsed);
            if let Some(eta) = s.eta_s() {
                timing.push_str(&format!(", ETA {}", duration(eta)));
            }
            ui.label(timing);
            // a finished stage's result is its test top-1; a running one shows its last epoch's
            if let Some(top1) = s.top1 {
                ui.label(format!("test top-1 {}", percent(top1)));
            } else if let Some(top1) = s.val_top1.last() {
                ui.label(format!("val top-1 {}", percent(top1)));
            } else if let Some(top1) = s.test_top1.last() {
                ui.label(format!("test top-1 {}", percent(top1)));
            }
            if let Some(loss) = s.loss.last() {
                ui.label(format!("loss {loss:.4}"));
            }
            if !s.host.is_empty() {
                ui.label(
                    RichText::new(format!("{} pid {}", s.host, s.pid))
                        .weak()
                        .small(),
                );
            }
            if let Some(e) = &s.error {
                ui.colored_label(status_colour(s.status), e);
            }
        });
}
