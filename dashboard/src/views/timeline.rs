//! The timeline: a run's stages on a time axis, one lane per host and process. Each process's
//! time on a stage is a bar coloured by how it ended (finished, failed, interrupted, lost when
//! the process vanished); a resumed bar is marked; before a stage's first bar, the time it
//! waited once the stages it needs had finished (locally: for a free slot; on Slurm: held for
//! dependencies, then queued, as the job's own times say). One look shows whether the K
//! incubations ran side by side.

use super::pipeline::{pick_run, status_colour};
use crate::store::{Run, SegmentEnd, StageView, Status};
use crate::view::{from_state, to_state, View};
use crate::workspace::Workspace;
use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Plot, PlotPoint, PlotPoints, Polygon, Text};
use incubator_events::StageId;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BarKind {
    /// Slurm: submitted, held until its dependencies finished.
    Held,
    /// Slurm: eligible, waiting for resources.
    Queued,
    /// Ready (what it needs had finished) but not started: no free worker.
    Waiting,
    /// A process worked on it.
    Ran { ended: SegmentEnd, resumed: bool },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bar {
    pub stage: String,
    pub kind: BarKind,
    /// Seconds since the run's first stage started.
    pub start: f64,
    pub end: f64,
    /// The row within its lane: a process that runs stages at the same time (`incubator run`
    /// trains independent stages on threads) gets a row per overlapping stage.
    pub row: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lane {
    /// `host pid N`
    pub name: String,
    pub rows: usize,
    pub bars: Vec<Bar>,
}

/// The lanes of a run: one per (host, pid), in the order the processes started.
pub fn lanes(run: &Run) -> Vec<Lane> {
    let t0 = run
        .stages
        .values()
        .flat_map(|s| {
            s.segments
                .iter()
                .map(|g| g.start - g.queued_s.unwrap_or(0.0) - g.held_s.unwrap_or(0.0))
        })
        .fold(f64::INFINITY, f64::min);
    // when each lane's process first started
    let mut first_start: Vec<f64> = Vec::new();
    let mut lanes: Vec<Lane> = Vec::new();
    for (id, s) in &run.stages {
        for (i, g) in s.segments.iter().enumerate() {
            let name = format!("{} pid {}", g.host, g.pid);
            let lane = match lanes.iter().position(|l| l.name == name) {
                Some(l) => l,
                None => {
                    lanes.push(Lane {
                        name,
                        rows: 0,
                        bars: Vec::new(),
                    });
                    first_start.push(g.start);
                    lanes.len() - 1
                }
            };
            first_start[lane] = first_start[lane].min(g.start);
            let slug = id.slug();
            // this process's time on the stage and what it waited before: one item, one row
            let mut item: Vec<Bar> = Vec::new();
            let mut bar = |kind, start: f64, end: f64| {
                // a wait of a few milliseconds (a worker was free at once) is no wait
                let shown = match kind {
                    BarKind::Ran { .. } => true,
                    BarKind::Waiting => end - start >= 0.1,
                    BarKind::Held | BarKind::Queued => end > start,
                };
                if shown {
                    item.push(Bar {
                        stage: slug.clone(),
                        kind,
                        start: start - t0,
                        end: end - t0,
                        row: 0,
                    })
                }
            };
            match (g.held_s, g.queued_s) {
                (held, Some(queued)) => {
                    let eligible = g.start - queued;
                    bar(BarKind::Held, eligible - held.unwrap_or(0.0), eligible);
                    bar(BarKind::Queued, eligible, g.start);
                }
                _ if i == 0 => {
                    if let Some(ready) = ready_at(run, *id) {
                        bar(BarKind::Waiting, ready, g.start);
                    }
                }
                _ => {}
            }
            bar(
                BarKind::Ran {
                    ended: g.ended,
                    resumed: g.resumed,
                },
                g.start,
                g.end,
            );
            lanes[lane].bars.extend(item);
        }
    }
    for lane in &mut lanes {
        lane.rows = pack_rows(&mut lane.bars);
    }
    // lanes in the order their processes started
    let mut ordered: Vec<(f64, Lane)> = first_start.into_iter().zip(lanes).collect();
    ordered.sort_by(|a, b| a.0.total_cmp(&b.0));
    ordered.into_iter().map(|(_, lane)| lane).collect()
}

/// Gives each stage's bars (waits and its run) a row, the first row free at its first bar, so
/// that stages one process ran at the same time do not cover each other; returns the rows used.
fn pack_rows(bars: &mut [Bar]) -> usize {
    // items: the bars of one stage segment are consecutive, its run last
    let mut items: Vec<(f64, f64, std::ops::Range<usize>)> = Vec::new();
    let mut first = 0;
    for (i, b) in bars.iter().enumerate() {
        if matches!(b.kind, BarKind::Ran { .. }) {
            let start = bars[first..=i]
                .iter()
                .map(|b| b.start)
                .fold(f64::INFINITY, f64::min);
            items.push((start, b.end.max(b.start), first..i + 1));
            first = i + 1;
        }
    }
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut row_ends: Vec<f64> = Vec::new();
    for (start, end, range) in items {
        let row = match row_ends.iter().position(|&e| e <= start) {
            Some(r) => r,
            None => {
                row_ends.push(f64::NEG_INFINITY);
                row_ends.len() - 1
            }
        };
        row_ends[row] = end;
        for b in &mut bars[range] {
            b.row = row;
        }
    }
    row_ends.len()
}

/// When a stage could have started: when the last stage it needs finished (`None` for stages
/// that need none, or while one of them has not finished).
fn ready_at(run: &Run, id: StageId) -> Option<f64> {
    let finished = |s: &StageView| {
        s.segments
            .iter()
            .find(|g| g.ended == SegmentEnd::Finished)
            .map(|g| g.end)
    };
    let needs = run.needs(id);
    if needs.is_empty() {
        return None;
    }
    needs
        .into_iter()
        .map(|n| run.stage(n).and_then(finished))
        .try_fold(f64::NEG_INFINITY, |acc, f| f.map(|f| acc.max(f)))
}

/// The most incubations that ran at the same time, and how many there are.
pub fn incubations_at_once(lanes: &[Lane]) -> (usize, usize) {
    let ran: Vec<&Bar> = lanes
        .iter()
        .flat_map(|l| &l.bars)
        .filter(|b| b.stage.starts_with("incubate-") && matches!(b.kind, BarKind::Ran { .. }))
        .collect();
    let mut modules: Vec<&str> = ran.iter().map(|b| b.stage.as_str()).collect();
    modules.sort();
    modules.dedup();
    // sweep over start (+1) and end (-1) points; ends first at equal times
    let mut points: Vec<(f64, i32)> = ran
        .iter()
        .flat_map(|b| [(b.start, 1), (b.end, -1)])
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in points {
        now += d;
        most = most.max(now);
    }
    (most as usize, modules.len())
}

fn colour(kind: BarKind) -> Color32 {
    match kind {
        BarKind::Held => Color32::from_gray(90),
        BarKind::Queued => Color32::from_rgb(150, 120, 200),
        BarKind::Waiting => Color32::from_gray(140),
        BarKind::Ran { ended, .. } => match ended {
            SegmentEnd::Open => status_colour(Status::Running),
            SegmentEnd::Finished => status_colour(Status::Finished),
            SegmentEnd::Failed => status_colour(Status::Failed),
            SegmentEnd::Interrupted => status_colour(Status::Interrupted),
            SegmentEnd::Lost => Color32::from_rgb(150, 40, 40),
        },
    }
}

fn describe_bar(b: &Bar) -> String {
    let what = match b.kind {
        BarKind::Held => "held for dependencies (Slurm)".to_string(),
        BarKind::Queued => "queued (Slurm)".to_string(),
        BarKind::Waiting => "waiting for a worker".to_string(),
        BarKind::Ran { ended, resumed } => format!(
            "{}{}",
            if resumed { "resumed, " } else { "" },
            match ended {
                SegmentEnd::Open => "running",
                SegmentEnd::Finished => "finished",
                SegmentEnd::Failed => "failed",
                SegmentEnd::Interrupted => "interrupted",
                SegmentEnd::Lost => "lost (process vanished)",
            }
        ),
    };
    format!("{} {what}", b.stage)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimelineSettings {
    /// The run shown (the first run when none or unknown).
    pub run: Option<String>,
}

#[derive(Default)]
pub struct TimelineView {
    pub settings: TimelineSettings,
}

impl TimelineView {
    fn shown<'a>(&self, ws: &'a Workspace) -> Option<&'a Run> {
        let named = self.settings.run.as_ref();
        named
            .and_then(|n| ws.runs.iter().find(|r| &r.name == n))
            .or_else(|| ws.runs.first())
    }
}

impl View for TimelineView {
    fn id(&self) -> &'static str {
        "timeline"
    }

    fn title(&self) -> &'static str {
        "Timeline"
    }

    fn state(&self) -> serde_json::Value {
        to_state(&self.settings)
    }

    fn restore(&mut self, state: serde_json::Value) {
        from_state(&mut self.settings, state);
    }

    fn describe(&self, ws: &Workspace) -> serde_json::Value {
        let Some(run) = self.shown(ws) else {
            return serde_json::Value::Null;
        };
        let lanes = lanes(run);
        let (most, k) = incubations_at_once(&lanes);
        serde_json::json!({"run": run.name, "lanes": lanes, "incubations_at_once": most, "incubations": k})
    }

    fn ui(&mut self, ui: &mut Ui, ws: &Workspace) {
        if ws.runs.len() > 1 {
            // one run at a time: the one shown is picked, the first by default
            let mut pick = self.shown(ws).map(|r| r.name.clone());
            pick_run(ui, "timeline-run", &mut pick, &ws.runs, false);
            self.settings.run = pick;
        }
        let Some(run) = self.shown(ws) else {
            ui.label("No runs yet.");
            return;
        };
        let lanes = lanes(run);
        let (most, k) = incubations_at_once(&lanes);
        ui.label(
            RichText::new(if k == 0 {
                "no incubation has started".to_string()
            } else if most <= 1 && k > 1 {
                format!("the {k} incubations ran one at a time")
            } else {
                format!("up to {most} of the {k} incubations ran at once")
            })
            .strong(),
        );
        ui.label(
            RichText::new(
                "bars: green finished, blue running, red failed, orange interrupted, dark red lost; grey: waiting for a worker; dark grey / violet: held / queued on Slurm; [r]: resumed from a checkpoint",
            )
            .weak(),
        );
        // each lane takes as many rows as it needs; its name labels its first row
        let mut offsets = Vec::with_capacity(lanes.len());
        let mut rows = 0usize;
        for l in &lanes {
            offsets.push(rows);
            rows += l.rows.max(1);
        }
        let names: Vec<(usize, String)> = offsets
            .iter()
            .zip(&lanes)
            .map(|(&o, l)| (o, l.name.clone()))
            .collect();
        let height = (34.0 * rows as f32 + 60.0).min(ui.available_height() * 0.7);
        Plot::new(("timeline", run.name.as_str()))
            .height(height.max(120.0))
            .legend(Legend::default())
            .x_axis_label("seconds since the first stage started")
            .show_grid([true, false])
            .allow_scroll(false)
            .y_axis_formatter(move |mark, _| {
                let i = (-mark.value).round();
                if (mark.value + i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                names
                    .iter()
                    .find(|(o, _)| *o == i as usize)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default()
            })
            .show(ui, |plot_ui| {
                for (lane, &offset) in lanes.iter().zip(&offsets) {
                    for b in &lane.bars {
                        let y = -((offset + b.row) as f64);
                        let (lo, hi) = match b.kind {
                            BarKind::Ran { .. } => (y - 0.3, y + 0.3),
                            _ => (y - 0.15, y + 0.15),
                        };
                        let end = b.end.max(b.start + 1e-3);
                        let rect = vec![[b.start, lo], [end, lo], [end, hi], [b.start, hi]];
                        plot_ui.polygon(
                            Polygon::new("", PlotPoints::from(rect))
                                .fill_color(colour(b.kind))
                                .stroke(egui::Stroke::new(1.0, Color32::BLACK)),
                        );
                        if let BarKind::Ran { resumed, .. } = b.kind {
                            let label = if resumed {
                                format!("{} [r]", b.stage)
                            } else {
                                b.stage.clone()
                            };
                            plot_ui.text(
                                Text::new("", PlotPoint::new((b.start + end) / 2.0, y), label)
                                    .color(Color32::BLACK),
                            );
                        }
                    }
                }
            });
        // the same, as text: what each process did (also what screen readers and tests read)
        egui::ScrollArea::vertical().show(ui, |ui| {
            for lane in &lanes {
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new(&lane.name).strong());
                    for b in &lane.bars {
                        ui.label(format!(
                            "{} ({:.1}-{:.1} s)",
                            describe_bar(b),
                            b.start,
                            b.end
                        ));
                    }
                });
            }
        });
    }
}
