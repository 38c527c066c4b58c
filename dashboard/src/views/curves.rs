//! Curves: one plot per metric, a line per run and stage, smoothed (debiased EMA) with the raw
//! curve faint behind it, on a log scale if asked, against step, epoch or time. Lines are
//! downsampled to the plot's width with min/max buckets, so a long run draws as fast as a
//! short one and spikes stay visible.

use crate::bands::{Band, BandCache};
use crate::colors;
use crate::series::{downsample, log10, Series, XAxis};
use crate::store::{Metric, Run, StageView};
use crate::view::{from_state, to_state, View};
use crate::workspace::Workspace;
use egui::Ui;
use egui_plot::{Legend, Line, Plot, PlotPoints, PlotUi, Points, Polygon};
use incubator_events::StageId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// What the curves view shows, and how: its part of a link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CurveSettings {
    pub metrics: BTreeSet<Metric>,
    /// Debiased EMA weight, 0 = raw.
    pub smoothing: f64,
    pub show_raw: bool,
    pub log_y: bool,
    pub x_axis: XAxis,
    /// Stage slugs hidden from the plots (`e2e`, `incubate-2`, ...).
    pub hidden_stages: BTreeSet<String>,
    /// Run (or, grouped, configuration) names hidden from the plots.
    pub hidden_runs: BTreeSet<String>,
    /// One line per configuration: the mean over its seeds with a band from the lowest to the
    /// highest seed, instead of a line per run.
    pub by_configuration: bool,
    /// Reduce each line to min/max buckets of the plot's width (off: every point is drawn;
    /// the frame-time benchmark's baseline).
    pub downsample: bool,
}

impl Default for CurveSettings {
    fn default() -> Self {
        CurveSettings {
            // a run without a validation split has no val curve, and one with it a test point
            metrics: [Metric::Loss, Metric::ValTop1, Metric::TestTop1]
                .into_iter()
                .collect(),
            smoothing: 0.6,
            show_raw: true,
            log_y: false,
            x_axis: XAxis::Step,
            hidden_stages: BTreeSet::new(),
            hidden_runs: BTreeSet::new(),
            by_configuration: false,
            downsample: true,
        }
    }
}

/// The curves view: its settings, the smoothing it has computed, the last export's message.
#[derive(Default)]
pub struct CurvesView {
    pub settings: CurveSettings,
    pub cache: SmoothCache,
    bands: BandCache,
    message: String,
}

/// Smoothed values per (run, stage, metric), extended as series grow instead of recomputed
/// every frame (EMA is incremental).
#[derive(Default)]
pub struct SmoothCache {
    entries: HashMap<(String, StageId, Metric), Smoothed>,
}

struct Smoothed {
    weight: f64,
    avg: f64,
    count: i32,
    values: Vec<f64>,
}

impl SmoothCache {
    pub fn get(&mut self, run: &str, stage: StageId, metric: Metric, s: &Series, w: f64) -> &[f64] {
        let e = self
            .entries
            .entry((run.to_string(), stage, metric))
            .or_insert(Smoothed {
                weight: w,
                avg: 0.0,
                count: 0,
                values: Vec::new(),
            });
        if e.weight != w || e.values.len() > s.len() {
            *e = Smoothed {
                weight: w,
                avg: 0.0,
                count: 0,
                values: Vec::new(),
            };
        }
        let w = w.clamp(0.0, 0.999);
        for &v in &s.value[e.values.len()..] {
            if w == 0.0 || !v.is_finite() {
                e.values.push(v);
                continue;
            }
            e.count += 1;
            e.avg = e.avg * w + (1.0 - w) * v;
            e.values.push(e.avg / (1.0 - w.powi(e.count)));
        }
        &e.values
    }
}

/// One line of a plot, as drawn (after smoothing and downsampling): what CSV export writes.
pub struct VisibleLine {
    pub run: String,
    pub stage: String,
    pub metric: Metric,
    pub raw: Vec<[f64; 2]>,
    pub smoothed: Vec<[f64; 2]>,
}

/// The stages the settings show: (run, stage, its slug, what is known of it).
fn shown_stages<'a>(
    runs: &'a [Run],
    settings: &'a CurveSettings,
) -> impl Iterator<Item = (&'a Run, &'a StageId, String, &'a StageView)> + 'a {
    runs.iter()
        .filter(|r| !settings.hidden_runs.contains(&r.name))
        .flat_map(|run| {
            run.stages
                .iter()
                .map(move |(id, stage)| (run, id, id.slug(), stage))
        })
        .filter(|(_, _, slug, _)| !settings.hidden_stages.contains(slug))
}

/// The lines of `metric` for the current settings within `[x0, x1]`, `buckets` wide.
pub fn lines(
    runs: &[Run],
    cache: &mut SmoothCache,
    settings: &CurveSettings,
    metric: Metric,
    (x0, x1): (f64, f64),
    buckets: usize,
) -> Vec<VisibleLine> {
    let mut out = Vec::new();
    for (run, id, slug, stage) in shown_stages(runs, settings) {
        let series = stage.metric(metric);
        if series.is_empty() {
            continue;
        }
        let xs = series.xs(settings.x_axis);
        let to_plot = |pts: Vec<[f64; 2]>| -> Vec<[f64; 2]> {
            if settings.log_y {
                pts.into_iter()
                    .filter_map(|[x, y]| log10(y).map(|l| [x, l]))
                    .collect()
            } else {
                pts
            }
        };
        let raw = if settings.show_raw || settings.smoothing == 0.0 {
            to_plot(downsample(xs, &series.value, x0, x1, buckets))
        } else {
            Vec::new()
        };
        let smoothed = if settings.smoothing > 0.0 {
            let ys = cache.get(&run.name, *id, metric, series, settings.smoothing);
            to_plot(downsample(xs, ys, x0, x1, buckets))
        } else {
            Vec::new()
        };
        out.push(VisibleLine {
            run: run.name.clone(),
            stage: slug.clone(),
            metric,
            raw,
            smoothed,
        });
    }
    out
}

/// Per shown configuration and stage: the series of `metric` of each of its runs.
fn shown_groups<'a>(
    ws: &'a Workspace,
    settings: &CurveSettings,
    metric: Metric,
) -> Vec<(String, StageId, Vec<&'a Series>)> {
    let mut out = Vec::new();
    for g in ws.groups() {
        if settings.hidden_runs.contains(&g.name) {
            continue;
        }
        let ids: BTreeSet<StageId> = g
            .runs
            .iter()
            .flat_map(|r| r.stages.keys().copied())
            .collect();
        for id in ids {
            if settings.hidden_stages.contains(&id.slug()) {
                continue;
            }
            let series: Vec<&Series> = g
                .runs
                .iter()
                .filter_map(|r| r.stage(id))
                .map(|s| s.metric(metric))
                .filter(|s| !s.is_empty())
                .collect();
            if !series.is_empty() {
                out.push((g.name.clone(), id, series));
            }
        }
    }
    out
}

/// The mean as a line, the band from the lowest to the highest seed as faint quads (egui fills
/// convex shapes only, so the band is drawn in at most a few hundred convex pieces).
fn draw_band(
    plot_ui: &mut PlotUi,
    band: &Band,
    name: String,
    colour: egui::Color32,
    log_y: bool,
    (x0, x1): (f64, f64),
    buckets: usize,
) {
    let y = |v: f64| if log_y { log10(v) } else { Some(v) };
    let visible: Vec<usize> = (0..band.x.len())
        .filter(|&i| band.x[i] >= x0 && band.x[i] <= x1)
        .collect();
    let stride = visible.len().div_ceil(300).max(1);
    let picked: Vec<usize> = visible.iter().copied().step_by(stride).collect();
    let fill = colors::faint(colour);
    for w in picked.windows(2) {
        let (a, b) = (w[0], w[1]);
        let corners = [
            (band.x[a], y(band.lo[a])),
            (band.x[b], y(band.lo[b])),
            (band.x[b], y(band.hi[b])),
            (band.x[a], y(band.hi[a])),
        ];
        let pts: Option<Vec<[f64; 2]>> = corners.iter().map(|&(x, v)| Some([x, v?])).collect();
        if let Some(pts) = pts {
            plot_ui.polygon(
                Polygon::new("", PlotPoints::from(pts))
                    .fill_color(fill)
                    .stroke(egui::Stroke::NONE),
            );
        }
    }
    let mean: Vec<[f64; 2]> = downsample(&band.x, &band.mean, x0, x1, buckets)
        .into_iter()
        .filter_map(|[x, v]| Some([x, y(v)?]))
        .collect();
    // sparse curves (an evaluation per epoch) also get their points: one point draws no line
    if mean.len() < 30 {
        plot_ui.points(
            Points::new("", PlotPoints::from(mean.clone()))
                .radius(2.5)
                .color(colour),
        );
    }
    plot_ui.line(Line::new(name, PlotPoints::from(mean)).color(colour));
}

/// A plugin's named loss terms (`aux_ce`, `kd`, `recon`, ...) of every shown stage, raw,
/// within `[x0, x1]`: (legend name, points).
pub fn term_lines(
    runs: &[Run],
    settings: &CurveSettings,
    (x0, x1): (f64, f64),
    buckets: usize,
) -> Vec<(String, Vec<[f64; 2]>)> {
    let mut out = Vec::new();
    for (run, _, slug, stage) in shown_stages(runs, settings) {
        for (term, series) in &stage.terms {
            let pts = downsample(series.xs(settings.x_axis), &series.value, x0, x1, buckets);
            let name = if runs.len() > 1 {
                format!("{}/{slug} {term}", run.name)
            } else {
                format!("{slug} {term}")
            };
            out.push((name, pts));
        }
    }
    out
}

fn controls(ui: &mut Ui, s: &mut CurveSettings, ws: &Workspace) {
    let runs = &ws.runs;
    ui.horizontal_wrapped(|ui| {
        for m in Metric::ALL {
            let mut on = s.metrics.contains(&m);
            if ui.checkbox(&mut on, m.label()).changed() {
                if on {
                    s.metrics.insert(m);
                } else {
                    s.metrics.remove(&m);
                }
            }
        }
    });
    ui.horizontal_wrapped(|ui| {
        ui.add(egui::Slider::new(&mut s.smoothing, 0.0..=0.99).text("smoothing"));
        ui.checkbox(&mut s.show_raw, "raw behind");
        ui.checkbox(&mut s.log_y, "log y");
        ui.label("x:");
        ui.selectable_value(&mut s.x_axis, XAxis::Step, "step");
        ui.selectable_value(&mut s.x_axis, XAxis::Epoch, "epoch");
        ui.selectable_value(&mut s.x_axis, XAxis::Time, "time (s)");
    });
    ui.horizontal_wrapped(|ui| {
        let stages: BTreeSet<String> = runs
            .iter()
            .flat_map(|r| r.stages.keys().map(|k| k.slug()))
            .collect();
        ui.label("stages:");
        for slug in stages {
            toggle(ui, &mut s.hidden_stages, slug);
        }
        if ws.has_seeds() {
            ui.separator();
            ui.checkbox(&mut s.by_configuration, "mean ± band per configuration")
                .on_hover_text("one line per configuration: the mean over its seeds, the band from the lowest to the highest seed");
        }
        let names: Vec<String> = if s.by_configuration {
            ws.groups().into_iter().map(|g| g.name).collect()
        } else {
            runs.iter().map(|r| r.name.clone()).collect()
        };
        if names.len() > 1 {
            ui.separator();
            ui.label(if s.by_configuration { "configurations:" } else { "runs:" });
            for name in names {
                toggle(ui, &mut s.hidden_runs, name);
            }
        }
    });
}

/// A checkbox that is on while `name` is not in `hidden`.
fn toggle(ui: &mut Ui, hidden: &mut BTreeSet<String>, name: String) {
    let mut shown = !hidden.contains(&name);
    if ui.checkbox(&mut shown, &name).changed() {
        if shown {
            hidden.remove(&name);
        } else {
            hidden.insert(name);
        }
    }
}

impl View for CurvesView {
    fn id(&self) -> &'static str {
        "curves"
    }

    fn title(&self) -> &'static str {
        "Curves"
    }

    fn state(&self) -> serde_json::Value {
        to_state(&self.settings)
    }

    fn restore(&mut self, state: serde_json::Value) {
        from_state(&mut self.settings, state);
    }

    fn describe(&self, ws: &Workspace) -> serde_json::Value {
        let lines = if self.settings.by_configuration {
            shown_groups(ws, &self.settings, Metric::Loss)
                .into_iter()
                .map(|(group, id, series)| format!("{group}/{id} ({} runs)", series.len()))
                .collect::<Vec<_>>()
        } else {
            shown_stages(&ws.runs, &self.settings)
                .map(|(run, _, slug, _)| format!("{}/{slug}", run.name))
                .collect()
        };
        serde_json::json!({"by_configuration": self.settings.by_configuration, "lines": lines})
    }

    fn ui(&mut self, ui: &mut Ui, ws: &Workspace) {
        ui.horizontal(|ui| {
            if ui.button("Export CSV").clicked() {
                let text = self.csv(&ws.runs);
                self.message =
                    crate::export::save("incubator-curves.csv", text.as_bytes(), "text/csv");
            }
            ui.label(&self.message);
        });
        controls(ui, &mut self.settings, ws);
        ui.separator();
        let metrics: Vec<Metric> = self.settings.metrics.iter().copied().collect();
        if metrics.is_empty() {
            ui.label("Choose a metric above.");
            return;
        }
        let height = (ui.available_height() / metrics.len() as f32 - 8.0).max(120.0);
        let buckets = if self.settings.downsample {
            (ui.available_width() as usize).clamp(100, 4000)
        } else {
            usize::MAX / 4
        };
        egui::ScrollArea::vertical().show(ui, |ui| {
            for metric in metrics {
                ui.label(metric.label());
                let mut plot = Plot::new(("curve", metric as u8))
                    .height(height)
                    .legend(Legend::default());
                if self.settings.log_y {
                    plot =
                        plot.y_axis_formatter(|mark, _| format!("{:.2e}", 10f64.powf(mark.value)));
                }
                plot.show(ui, |plot_ui| {
                    // While the plot fits its data (no zoom), the x range is all of it: the
                    // bounds follow the points we give, so they must not limit them.
                    let b = plot_ui.plot_bounds();
                    let range = if !plot_ui.auto_bounds().x && b.is_valid() && b.width() > 0.0 {
                        (b.min()[0], b.max()[0])
                    } else {
                        (f64::NEG_INFINITY, f64::INFINITY)
                    };
                    if self.settings.by_configuration {
                        let s = &self.settings;
                        let groups = shown_groups(ws, s, metric);
                        let named = groups.iter().map(|g| &g.0).collect::<BTreeSet<_>>().len() > 1;
                        for (group, id, series) in groups {
                            let name = if named {
                                format!("{group}/{id}")
                            } else {
                                id.slug()
                            };
                            let colour = colors::curve(&group, &id.slug());
                            let key = (group, id, metric);
                            let band = self.bands.get(key, &series, s.x_axis, s.smoothing);
                            draw_band(plot_ui, band, name, colour, s.log_y, range, buckets);
                        }
                        return;
                    }
                    let runs = &ws.runs;
                    for line in lines(
                        runs,
                        &mut self.cache,
                        &self.settings,
                        metric,
                        range,
                        buckets,
                    ) {
                        let colour = colors::curve(&line.run, &line.stage);
                        let name = if runs.len() > 1 {
                            format!("{}/{}", line.run, line.stage)
                        } else {
                            line.stage.clone()
                        };
                        // sparse curves (an evaluation per epoch, the test split's one
                        // evaluation at a stage's end) also get their points: one point
                        // draws no line
                        if !line.raw.is_empty() && line.raw.len() < 30 {
                            plot_ui.points(
                                Points::new("", PlotPoints::from(line.raw.clone()))
                                    .radius(2.5)
                                    .color(colour),
                            );
                        }
                        if !line.raw.is_empty() {
                            // behind a smoothed line the raw one is faint and nameless (an empty
                            // name keeps it out of the legend, which shows the smoothed colour)
                            let (faint, raw_name) = if line.smoothed.is_empty() {
                                (colour, name.clone())
                            } else {
                                (colors::faint(colour), String::new())
                            };
                            plot_ui
                                .line(Line::new(raw_name, PlotPoints::from(line.raw)).color(faint));
                        }
                        if !line.smoothed.is_empty() {
                            plot_ui.line(
                                Line::new(name, PlotPoints::from(line.smoothed)).color(colour),
                            );
                        }
                    }
                });
            }
            let runs = &ws.runs;
            if runs
                .iter()
                .any(|r| r.stages.values().any(|s| !s.terms.is_empty()))
            {
                ui.label("loss terms");
                let settings = &self.settings;
                Plot::new("loss-terms")
                    .height(height)
                    .legend(Legend::default())
                    .show(ui, |plot_ui| {
                        let all = (f64::NEG_INFINITY, f64::INFINITY);
                        for (name, pts) in term_lines(runs, settings, all, buckets) {
                            plot_ui.line(Line::new(name, PlotPoints::from(pts)));
                        }
                    });
            }
        });
    }
}

impl CurvesView {
    /// CSV of every shown curve at full resolution: `run,stage,metric,x_axis,x,value,smoothed`.
    pub fn csv(&mut self, runs: &[Run]) -> String {
        let mut out = String::from("run,stage,metric,x_axis,x,value,smoothed\n");
        let settings = &self.settings;
        let mut full = settings.clone();
        full.log_y = false;
        full.show_raw = true;
        for &metric in &settings.metrics {
            let all = (f64::NEG_INFINITY, f64::INFINITY);
            for line in lines(runs, &mut self.cache, &full, metric, all, usize::MAX / 4) {
                let smoothed = if line.smoothed.len() == line.raw.len() {
                    line.smoothed.iter().map(|p| p[1]).collect()
                } else {
                    line.raw.iter().map(|p| p[1]).collect::<Vec<_>>()
                };
                for (p, s) in line.raw.iter().zip(smoothed) {
                    out.push_str(&format!(
                        "{},{},{},{:?},{},{},{}\n",
                        line.run,
                        line.stage,
                        metric.label().replace(' ', "_"),
                        settings.x_axis,
                        p[0],
                        p[1],
                        s
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use incubator_events::{Event, Record, StageId};

    #[test]
    fn csv_has_every_point_of_the_shown_curves_raw_and_smoothed() {
        let mut run = Run::new("r");
        for step in 1..=5u64 {
            run.apply(&Record::new(
                StageId::META,
                step as f64,
                Event::TrainStep {
                    step,
                    epoch: step as f64 / 5.0,
                    loss: step as f64,
                    lr: 0.1,
                    grad_norm: 1.0,
                    samples_per_sec: 10.0,
                    terms: Default::default(),
                },
            ));
        }
        let runs = vec![run];
        let mut view = CurvesView::default();
        view.settings.metrics = [Metric::Loss].into_iter().collect();
        view.settings.smoothing = 0.5;
        let text = view.csv(&runs);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "run,stage,metric,x_axis,x,value,smoothed");
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[1], "r,meta,train_loss,Step,1,1,1");
        // debiased EMA of 1, 2: (0.5 * 0.5 + 1) / 0.75
        assert!(
            lines[2].starts_with("r,meta,train_loss,Step,2,2,1.666"),
            "{}",
            lines[2]
        );
        view.settings.hidden_stages.insert("meta".into());
        assert_eq!(
            view.csv(&runs).lines().count(),
            1,
            "hidden curves are not exported"
        );
    }
}
