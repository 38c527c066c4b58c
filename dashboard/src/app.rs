//! The dashboard application: the workspace (runs fed by their sources every frame), the views
//! as tabs, and what is remembered of them (a link in the browser, storage natively).

use crate::memory::{self, Memory};
use crate::source::Source;
use crate::store::Run;
use crate::view::{downcast, downcast_mut, View};
use crate::workspace::Workspace;

pub struct DashboardApp {
    pub workspace: Workspace,
    views: Vec<Box<dyn View>>,
    open: usize,
    /// A line for the status bar (a saved screenshot's path).
    message: String,
    pub frames: u64,
    /// Where the screenshot callback leaves the image for the next frame to save.
    screenshot: std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<egui::ColorImage>>>>,
}

impl DashboardApp {
    pub fn new(sources: Vec<Box<dyn Source>>) -> DashboardApp {
        DashboardApp::over(Workspace::new(sources))
    }

    /// Runs given directly (tests, benchmarks): no sources.
    pub fn with_runs(runs: Vec<Run>) -> DashboardApp {
        DashboardApp::over(Workspace::with_runs(runs))
    }

    fn over(workspace: Workspace) -> DashboardApp {
        let views = crate::views::all();
        let open = views.iter().position(|v| v.id() == "curves").unwrap_or(0);
        DashboardApp {
            workspace,
            views,
            open,
            message: String::new(),
            frames: 0,
            screenshot: Default::default(),
        }
    }

    /// The open view's id.
    pub fn open_id(&self) -> &'static str {
        self.views[self.open].id()
    }

    /// Opens the view with this id; false if there is none.
    pub fn open_view(&mut self, id: &str) -> bool {
        match self.views.iter().position(|v| v.id() == id) {
            Some(i) => {
                self.open = i;
                true
            }
            None => false,
        }
    }

    pub fn view<T: View>(&self) -> Option<&T> {
        self.views.iter().find_map(|v| downcast::<T>(v.as_ref()))
    }

    pub fn view_mut<T: View>(&mut self) -> Option<&mut T> {
        self.views
            .iter_mut()
            .find_map(|v| downcast_mut::<T>(v.as_mut()))
    }

    /// Every view's state and the open view: what the native app saves between sessions.
    pub fn memory(&self) -> Memory {
        Memory {
            view: self.open_id().to_string(),
            views: self
                .views
                .iter()
                .map(|v| (v.id().to_string(), v.state()))
                .collect(),
        }
    }

    pub fn restore(&mut self, memory: Memory) {
        for v in &mut self.views {
            if let Some(state) = memory.views.get(v.id()) {
                v.restore(state.clone());
            }
        }
        self.open_view(&memory.view);
    }

    /// The URL fragment for what is shown now (the open view and its state).
    pub fn link(&self) -> String {
        let v = &self.views[self.open];
        memory::to_fragment(v.id(), &v.state())
    }

    /// Shows what a link's fragment names; false if it names no view.
    pub fn follow_link(&mut self, fragment: &str) -> bool {
        let Some((id, state)) = memory::from_fragment(fragment) else {
            return false;
        };
        if !self.open_view(&id) {
            return false;
        }
        if !state.is_null() {
            self.views[self.open].restore(state);
        }
        true
    }

    /// One frame of the whole UI (separate from `eframe::App` so tests and benchmarks can
    /// drive it with a bare `egui::Context::run_ui`).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.frames += 1;
        let now = ctx.input(|i| i.time);
        if self.workspace.pull(now) {
            ctx.request_repaint();
        }
        // live data: look again soon even when the user does nothing
        ctx.request_repaint_after(std::time::Duration::from_millis(250));

        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("incubator");
                ui.separator();
                for (i, v) in self.views.iter().enumerate() {
                    if ui.selectable_label(self.open == i, v.title()).clicked() {
                        self.open = i;
                    }
                }
                ui.separator();
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
                let records: usize = self.workspace.runs.iter().map(|r| r.records).sum();
                ui.label(format!(
                    "{} run(s), {records} records",
                    self.workspace.runs.len()
                ));
                for p in self.workspace.problems() {
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
        let workspace = &self.workspace;
        let view = &mut self.views[self.open];
        egui::CentralPanel::default().show(ui, |ui| view.ui(ui, workspace));
    }
}

/// The key under which the native app keeps its [`Memory`].
pub const MEMORY_KEY: &str = "incubator-dashboard";

impl eframe::App for DashboardApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, MEMORY_KEY, &self.memory());
    }
}

/// A summary of what the app holds and shows, as JSON (for tests, native or in the browser).
pub fn state_json(app: &DashboardApp) -> String {
    let runs: Vec<serde_json::Value> = app
        .workspace
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
            serde_json::json!({"name": r.name, "group": r.group, "records": r.records, "stages": stages})
        })
        .collect();
    let open = &app.views[app.open];
    serde_json::json!({
        "runs": runs,
        "frames": app.frames,
        "view": open.id(),
        "link": app.link(),
        "shows": open.describe(&app.workspace),
    })
    .to_string()
}
