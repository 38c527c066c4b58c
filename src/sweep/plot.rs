//! The report's plots, as SVG: top-1 against training compute for the method and the E2E
//! baseline (mean over seeds, bars of one standard deviation), and, for a grid with one
//! numeric axis, top-1 against that axis.

use super::report::{PointStats, SweepReport};
use incubator_compare::MeanSd;
use plotters::prelude::*;
use std::path::Path;

/// A series point: x, mean top-1 (%), its standard deviation, and a label.
struct Mark {
    x: f64,
    y: f64,
    sd: f64,
    label: String,
}

const METHOD: RGBColor = RGBColor(31, 119, 180);
const E2E: RGBColor = RGBColor(214, 39, 40);

/// The short label of a point: its axis labels ("16,1x").
fn short(p: &PointStats) -> String {
    p.point
        .coords
        .iter()
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn mark(x: f64, m: &MeanSd, label: String) -> Mark {
    Mark {
        x,
        y: 100.0 * m.mean,
        sd: if m.sd.is_finite() { 100.0 * m.sd } else { 0.0 },
        label,
    }
}

/// Top-1 against compute (TFLOP); written to `path`.
pub fn accuracy_vs_compute(report: &SweepReport, path: &Path) -> anyhow::Result<()> {
    let method: Vec<Mark> = report
        .points
        .iter()
        .map(|p| {
            mark(
                p.stats.method_gflop.mean / 1e3,
                &p.stats.assembled_top1,
                short(p),
            )
        })
        .collect();
    let e2e: Vec<Mark> = report
        .points
        .iter()
        .filter_map(|p| {
            Some(mark(
                p.stats.e2e_gflop?.mean / 1e3,
                p.stats.e2e_top1.as_ref()?,
                short(p),
            ))
        })
        .collect();
    draw(
        path,
        &format!("{}: top-1 against training compute", report.title),
        "training compute (TFLOP)",
        &method,
        &e2e,
        report
            .points
            .first()
            .is_some_and(|p| p.point.coords.len() == 1),
    )
}

/// Top-1 against the grid's one numeric axis, when it has one; `None` otherwise.
pub fn accuracy_vs_axis(report: &SweepReport, path: &Path) -> anyhow::Result<Option<String>> {
    let axes: Vec<&String> = match report.points.first() {
        Some(p) => p.point.coords.iter().map(|(a, _)| a).collect(),
        None => return Ok(None),
    };
    if axes.len() != 1 {
        return Ok(None);
    }
    let xs: Option<Vec<f64>> = report
        .points
        .iter()
        .map(|p| p.point.coords[0].1.parse::<f64>().ok())
        .collect();
    let Some(xs) = xs else { return Ok(None) };
    let method: Vec<Mark> = report
        .points
        .iter()
        .zip(&xs)
        .map(|(p, &x)| mark(x, &p.stats.assembled_top1, String::new()))
        .collect();
    let e2e: Vec<Mark> = report
        .points
        .iter()
        .zip(&xs)
        .filter_map(|(p, &x)| Some(mark(x, p.stats.e2e_top1.as_ref()?, String::new())))
        .collect();
    draw(
        path,
        &format!("{}: top-1 against {}", report.title, axes[0]),
        axes[0],
        &method,
        &e2e,
        true,
    )?;
    Ok(Some(axes[0].clone()))
}

/// `join`: connect each series' points in x order (a curve: the grid has one axis).
fn draw(
    path: &Path,
    title: &str,
    x_desc: &str,
    method: &[Mark],
    e2e: &[Mark],
    join: bool,
) -> anyhow::Result<()> {
    let all = method.iter().chain(e2e);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for m in all {
        x0 = x0.min(m.x);
        x1 = x1.max(m.x);
        y0 = y0.min(m.y - m.sd);
        y1 = y1.max(m.y + m.sd);
    }
    if x0 > x1 {
        anyhow::bail!("nothing to plot: no finished run");
    }
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).max(hi.abs() * 0.05).max(1e-3);
        (lo - 0.08 * span, hi + 0.08 * span)
    };
    let (x0, x1) = pad(x0, x1);
    let (y0, y1) = pad(y0, y1);
    let err = |e: DrawingAreaErrorKind<std::io::Error>| {
        anyhow::anyhow!("drawing {}: {e}", path.display())
    };
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc(x_desc)
        .y_desc("test top-1 (%), mean and ±1 sd over seeds")
        .draw()
        .map_err(err)?;
    for (marks, color, name) in [
        (method, METHOD, "assembled (method)"),
        (e2e, E2E, "end-to-end"),
    ] {
        let mut sorted: Vec<&Mark> = marks.iter().collect();
        sorted.sort_by(|a, b| a.x.total_cmp(&b.x));
        if !join {
            sorted.clear();
        }
        chart
            .draw_series(LineSeries::new(
                sorted.iter().map(|m| (m.x, m.y)),
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
        // the bar's middle is the mean's dot
        chart
            .draw_series(marks.iter().map(|m| {
                ErrorBar::new_vertical(m.x, m.y - m.sd, m.y, m.y + m.sd, color.filled(), 8)
            }))
            .map_err(err)?;
        chart
            .draw_series(marks.iter().filter(|m| !m.label.is_empty()).map(|m| {
                Text::new(
                    m.label.clone(),
                    (m.x, m.y),
                    ("sans-serif", 12).into_font().color(&color),
                )
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
