//! The dashboard's views, one file each: the pipeline of each run, the stage timeline, the
//! curves, accuracy against cost, and the comparison. Each owns its state (see `view.rs`).

pub mod compare;
pub mod cost;
pub mod curves;
pub mod format;
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
