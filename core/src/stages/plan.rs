//! The run's stage plan as its config and plugins make it: the modules of its split, the
//! order its incubation strategy puts them in, and whether the E2E baseline runs and teaches.
//! Made once when a run opens, so a strategy whose order is impossible is refused before
//! anything trains.

use super::teacher_spec::TeacherSpec;
pub use crate::events::plan::{Artifact, Baseline, PlanError, PlannedStage, StagePlan};
use crate::events::{StageId, StageKind};
use crate::plugin::{PluginContext, Registry};

/// The plan of the run `ctx` describes, with `registry`'s plugins.
pub fn of(registry: &Registry, ctx: &PluginContext) -> anyhow::Result<StagePlan> {
    let s = registry.strategy(&ctx.cfg.plugins.strategy)?;
    let in_plugin = |what: &str, e: crate::plugin::PluginError| {
        e.into_anyhow()
            .context(format!("incubation strategy {:?}: {what}", s.name()))
    };
    let depends_on: Vec<Vec<usize>> = (0..ctx.split.k()).map(|i| s.depends_on(ctx, i)).collect();
    let teachers = s.teachers(ctx).map_err(|e| in_plugin("teachers()", e))?;
    let mut taught = false;
    for spec in &teachers {
        let parsed = TeacherSpec::parse(spec)?;
        taught |= parsed.run.is_none() && parsed.stage == StageId::E2E;
    }
    let baseline = match (ctx.cfg.e2e.enabled, taught) {
        (true, true) => Baseline::Teaches,
        (true, false) => Baseline::Beside,
        (false, false) => Baseline::Off,
        (false, true) => anyhow::bail!(
            "incubation strategy {:?} is taught by this run's E2E model, but e2e.enabled = false; enable it, or name another run's model as the teacher",
            s.name()
        ),
    };
    StagePlan::assembling(&depends_on, baseline).map_err(|e| {
        anyhow::anyhow!(
            "incubation strategy {:?} cannot order the modules: {e}; its depends_on must name other modules of the split, without a ring",
            s.name()
        )
    })
}

/// The command that runs stage `id`, after `incubator`.
pub fn command(id: StageId) -> String {
    match (id.stage, id.module) {
        (StageKind::Incubate, Some(i)) => format!("incubate --module {i}"),
        (kind, _) => kind.as_str().to_string(),
    }
}
