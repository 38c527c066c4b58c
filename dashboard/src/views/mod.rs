//! The dashboard's views, one file each: the pipeline of each run, the stage timeline, the
//! curves, accuracy against cost, and the comparison. Each owns its state (see `view.rs`).

pub mod compare;
pub mod cost;
pub mod curves;
pub mod pipeline;
pub mod timeline;

use crate::view::View;

/// Every view, in tab order.
pub fn all() -> Vec<Box<dyn View>> {
    vec![
        Box::new(pipeline::PipelineView::default()),
        Box::new(timeline::TimelineView::default()),
        Box::new(curves::CurvesView::default()),
        Box::new(cost::CostView::default()),
        Box::new(compare::CompareView),
    ]
}

/// `95.2 %` for a fraction.
pub fn percent(v: f64) -> String {
    format!("{:.2} %", 100.0 * v)
}

/// `1 h 02 min`, `3 min 20 s`, `12 s`.
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}
