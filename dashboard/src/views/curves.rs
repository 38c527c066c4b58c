//! Curves: one plot per metric, a line per run and stage, smoothed (debiased EMA) with the raw
//! curve faint behind it, on a log scale if asked, against step, epoch or time. Lines are
//! downsampled to the plot's width with min/max buckets, so a long run draws as fast as a
//! short one and spikes stay visible.

use crate::app::{CurveSettings, DashboardApp};
use crate::colors;
use crate::series::{downsample, log10, Series, XAxis};
use crate::store::{Metric, Run, StageView};
use egui::Ui;
use egui_plot::{Legend, Line, Plot, PlotPoints};
use incubator_events::StageId;
use std::collections::{BTreeSet, HashMap};

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

fn controls(ui: &mut Ui, s: &mut CurveSettings, runs: &[Run]) {
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
        if runs.len() > 1 {
            ui.separator();
            ui.label("runs:");
            for r in runs {
                toggle(ui, &mut s.hidden_runs, r.name.clone());
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

pub fn show(ui: &mut Ui, app: &mut DashboardApp) {
    controls(ui, &mut app.curves, &app.runs);
    ui.separator();
    let metrics: Vec<Metric> = app.curves.metrics.iter().copied().collect();
    if metrics.is_empty() {
        ui.label("Choose a metric above.");
        return;
    }
    let height = (ui.available_height() / metrics.len() as f32 - 8.0).max(120.0);
    let buckets = if app.curves.downsample {
        (ui.available_width() as usize).clamp(100, 4000)
    } else {
        usize::MAX / 4
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        for metric in metrics {
            ui.label(metric.label());
            let settings = &app.curves;
            let runs = &app.runs;
            let cache = &mut app.smoothing_cache;
            let mut plot = Plot::new(("curve", metric as u8))
                .height(height)
                .legend(Legend::default());
            if settings.log_y {
                plot = plot.y_axis_formatter(|mark, _| format!("{:.2e}", 10f64.powf(mark.value)));
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
                for line in lines(runs, cache, settings, metric, range, buckets) {
                    let colour = colors::curve(&line.run, &line.stage);
                    let name = if runs.len() > 1 {
                        format!("{}/{}", line.run, line.stage)
                    } else {
                        line.stage.clone()
                    };
                    if !line.raw.is_empty() {
                        // behind a smoothed line the raw one is faint and nameless (an empty
                        // name keeps it out of the legend, which shows the smoothed colour)
                        let (faint, raw_name) = if line.smoothed.is_empty() {
                            (colour, name.clone())
                        } else {
                            (colors::faint(colour), String::new())
                        };
                        plot_ui.line(Line::new(raw_name, PlotPoints::from(line.raw)).color(faint));
                    }
                    if !line.smoothed.is_empty() {
                        plot_ui
                            .line(Line::new(name, PlotPoints::from(line.smoothed)).color(colour));
                    }
                }
            });
        }
        let runs = &app.runs;
        let settings = &app.curves;
        if runs
            .iter()
            .any(|r| r.stages.values().any(|s| !s.terms.is_empty()))
        {
            ui.label("loss terms");
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
