//! The stage plan of a run: its stages, what each reads from the run directory and writes
//! there, and so which stages must finish before which. The local runner schedules it, Slurm
//! submits it, sweeps ask it whether a run is finished, each stage refuses to start before
//! what it needs, and the dashboard's timeline measures waits against it: one graph, written
//! once.

use crate::{StageId, StageKind};
use std::fmt;

/// What a stage leaves in the run directory for the stages after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Artifact {
    /// The trained meta model (phase PT): every incubation trains inside it, and assembly
    /// rules may take its stem and head.
    MetaModel,
    /// Module `i`'s trained unit (phase MT).
    Module(usize),
    /// The stacked and fine-tuned target model (phase FT).
    AssembledModel,
    /// The end-to-end baseline's model, which can also teach the incubations.
    E2eModel,
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Artifact::MetaModel => f.write_str("the meta model"),
            Artifact::Module(i) => write!(f, "module {i}"),
            Artifact::AssembledModel => f.write_str("the assembled model"),
            Artifact::E2eModel => f.write_str("the E2E model"),
        }
    }
}

/// Where the E2E baseline sits in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// `e2e.enabled = false`: no baseline.
    Off,
    /// Trained for the comparison only, independent of the method's stages.
    Beside,
    /// Also a teacher of the incubations (m2mKD's E2E model): they wait for it.
    Teaches,
}

/// One stage of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedStage {
    pub id: StageId,
    pub reads: Vec<Artifact>,
    pub writes: Vec<Artifact>,
    /// The stages that write what this one reads, in plan order.
    pub needs: Vec<StageId>,
}

/// Why a strategy's module order cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// A split into no modules.
    NoModules,
    /// Module `module` depends on itself or on one the split does not have.
    BadDependency { module: usize, on: usize, k: usize },
    /// These modules wait for each other in a ring: none of them could ever start.
    Cycle { modules: Vec<usize> },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoModules => f.write_str("the split has no modules"),
            PlanError::BadDependency { module, on, k } if module == on => {
                write!(f, "module {module} depends on itself (of {k} modules)")
            }
            PlanError::BadDependency { module, on, k } => write!(
                f,
                "module {module} depends on module {on}, which is out of range: the split has {k} modules (0..={})",
                k - 1
            ),
            PlanError::Cycle { modules } => write!(
                f,
                "modules {modules:?} depend on each other in a ring, so none of them could start"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// The stages of a run in an order one worker can run them (each after all it needs), with
/// what each reads and writes.
#[derive(Clone, Debug, PartialEq)]
pub struct StagePlan {
    stages: Vec<PlannedStage>,
}

impl StagePlan {
    /// The plan of Deep Model Assembling with `depends_on.len()` modules: the meta model; each
    /// module's incubation inside it, after the modules its strategy names in `depends_on`
    /// (empty for the reference, where all are independent); assembly of them all; and the
    /// baseline, first when it teaches and last otherwise.
    pub fn assembling(depends_on: &[Vec<usize>], baseline: Baseline) -> Result<Self, PlanError> {
        let k = depends_on.len();
        if k == 0 {
            return Err(PlanError::NoModules);
        }
        for (module, deps) in depends_on.iter().enumerate() {
            if let Some(&on) = deps.iter().find(|&&j| j >= k || j == module) {
                return Err(PlanError::BadDependency { module, on, k });
            }
        }
        let mut stages = Vec::new();
        let e2e = || (StageId::E2E, vec![], vec![Artifact::E2eModel]);
        if baseline == Baseline::Teaches {
            stages.push(e2e());
        }
        stages.push((StageId::META, vec![], vec![Artifact::MetaModel]));
        for i in modules_in_order(depends_on)? {
            let mut reads = vec![Artifact::MetaModel];
            reads.extend(depends_on[i].iter().map(|&j| Artifact::Module(j)));
            if baseline == Baseline::Teaches {
                reads.push(Artifact::E2eModel);
            }
            stages.push((StageId::incubate(i), reads, vec![Artifact::Module(i)]));
        }
        let mut reads = vec![Artifact::MetaModel];
        reads.extend((0..k).map(Artifact::Module));
        stages.push((StageId::ASSEMBLE, reads, vec![Artifact::AssembledModel]));
        if baseline == Baseline::Beside {
            stages.push(e2e());
        }
        Ok(Self::linked(stages))
    }

    /// Each stage's needs: the stages (earlier in the list) that write what it reads.
    fn linked(stages: Vec<(StageId, Vec<Artifact>, Vec<Artifact>)>) -> StagePlan {
        let mut planned: Vec<PlannedStage> = Vec::with_capacity(stages.len());
        for (id, reads, writes) in stages {
            let needs = planned
                .iter()
                .filter(|p| p.writes.iter().any(|w| reads.contains(w)))
                .map(|p| p.id)
                .collect();
            planned.push(PlannedStage {
                id,
                reads,
                writes,
                needs,
            });
        }
        StagePlan { stages: planned }
    }

    /// Every stage, each after all it needs.
    pub fn stages(&self) -> &[PlannedStage] {
        &self.stages
    }

    pub fn get(&self, id: StageId) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// What must finish before `id` starts (nothing for a stage not in the plan).
    pub fn needs(&self, id: StageId) -> &[StageId] {
        self.get(id).map_or(&[], |s| &s.needs)
    }

    /// The stages `id` waits for (directly or not) that are `among` the ones asked about,
    /// without those another of them already waits for: the shortest list of dependencies a
    /// batch system must be told (assembly after the incubations still to run, not also after
    /// the meta model they wait for). In plan order.
    pub fn nearest(&self, id: StageId, among: impl Fn(StageId) -> bool) -> Vec<StageId> {
        let waited: Vec<StageId> = self
            .stages
            .iter()
            .map(|s| s.id)
            .filter(|&n| among(n) && self.waits_for(id, n))
            .collect();
        waited
            .iter()
            .copied()
            .filter(|&n| !waited.iter().any(|&m| m != n && self.waits_for(m, n)))
            .collect()
    }

    /// Whether `id` waits for `other`, directly or through stages between them. Each stage is
    /// visited once: a strategy that orders every module after all earlier ones (`sequential`)
    /// has exponentially many paths through them.
    pub fn waits_for(&self, id: StageId, other: StageId) -> bool {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<StageId> = self.needs(id).to_vec();
        while let Some(n) = todo.pop() {
            if n == other {
                return true;
            }
            if seen.insert(n) {
                todo.extend_from_slice(self.needs(n));
            }
        }
        false
    }

    /// The number of modules.
    pub fn modules(&self) -> usize {
        self.stages
            .iter()
            .filter(|s| s.id.stage == StageKind::Incubate)
            .count()
    }

    /// For each module, in module order, the modules its incubation waits for.
    pub fn module_dependencies(&self) -> Vec<Vec<usize>> {
        let mut deps = vec![Vec::new(); self.modules()];
        for s in &self.stages {
            if let Some(i) = s.id.module {
                deps[i] = s.needs.iter().filter_map(|n| n.module).collect();
                deps[i].sort_unstable();
            }
        }
        deps
    }
}

/// The modules in an order where each comes after those it depends on (lowest index first
/// among those ready), or the ring that makes that impossible.
fn modules_in_order(depends_on: &[Vec<usize>]) -> Result<Vec<usize>, PlanError> {
    let k = depends_on.len();
    let mut placed = vec![false; k];
    let mut order = Vec::with_capacity(k);
    while order.len() < k {
        let next = (0..k).find(|&i| !placed[i] && depends_on[i].iter().all(|&j| placed[j]));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                return Err(PlanError::Cycle {
                    modules: (0..k).filter(|&i| !placed[i]).collect(),
                })
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(plan: &StagePlan) -> Vec<String> {
        plan.stages().iter().map(|s| s.id.slug()).collect()
    }

    #[test]
    fn the_reference_plan_runs_meta_then_independent_modules_then_assembly() {
        let plan = StagePlan::assembling(&[vec![], vec![], vec![]], Baseline::Beside).unwrap();
        assert_eq!(
            ids(&plan),
            [
                "meta",
                "incubate-0",
                "incubate-1",
                "incubate-2",
                "assemble",
                "e2e"
            ]
        );
        assert_eq!(plan.needs(StageId::incubate(1)), [StageId::META]);
        assert_eq!(
            plan.needs(StageId::ASSEMBLE),
            [
                StageId::META,
                StageId::incubate(0),
                StageId::incubate(1),
                StageId::incubate(2)
            ]
        );
        assert!(plan.needs(StageId::E2E).is_empty() && plan.needs(StageId::META).is_empty());
        assert_eq!(
            plan.nearest(StageId::ASSEMBLE, |_| true),
            (0..3).map(StageId::incubate).collect::<Vec<_>>(),
            "the meta model is waited for through the incubations"
        );
        assert_eq!(
            plan.nearest(StageId::ASSEMBLE, |n| n != StageId::incubate(1)),
            [StageId::incubate(0), StageId::incubate(2)]
        );
        assert_eq!(
            plan.nearest(StageId::ASSEMBLE, |n| n.module.is_none()),
            [StageId::META],
            "with the incubations finished, the meta model is the nearest still to run"
        );
        assert_eq!(plan.module_dependencies(), vec![Vec::<usize>::new(); 3]);
        let asm = plan.get(StageId::ASSEMBLE).unwrap();
        assert_eq!(asm.writes, [Artifact::AssembledModel]);
        assert!(asm.reads.contains(&Artifact::Module(2)));
    }

    #[test]
    fn a_teaching_baseline_comes_first_and_every_incubation_waits_for_it() {
        let plan = StagePlan::assembling(&[vec![], vec![]], Baseline::Teaches).unwrap();
        assert_eq!(ids(&plan)[..2], ["e2e", "meta"]);
        assert_eq!(
            plan.needs(StageId::incubate(0)),
            [StageId::E2E, StageId::META]
        );
        assert!(plan.waits_for(StageId::ASSEMBLE, StageId::E2E));
        let off = StagePlan::assembling(&[vec![], vec![]], Baseline::Off).unwrap();
        assert!(off.get(StageId::E2E).is_none());
        assert!(!off.waits_for(StageId::ASSEMBLE, StageId::E2E));
    }

    #[test]
    fn ordered_modules_are_planned_after_what_they_need_whatever_their_index() {
        // module 0 after 2, 2 after 1: a chain in reverse index order
        let plan = StagePlan::assembling(&[vec![2], vec![], vec![1]], Baseline::Off).unwrap();
        assert_eq!(
            ids(&plan),
            ["meta", "incubate-1", "incubate-2", "incubate-0", "assemble"]
        );
        assert_eq!(
            plan.needs(StageId::incubate(0)),
            [StageId::META, StageId::incubate(2)]
        );
        assert_eq!(
            plan.nearest(StageId::incubate(0), |_| true),
            [StageId::incubate(2)]
        );
        assert_eq!(plan.module_dependencies(), vec![vec![2], vec![], vec![1]]);
        assert_eq!(
            plan.nearest(StageId::ASSEMBLE, |_| true),
            [StageId::incubate(0)]
        );
        assert!(plan.waits_for(StageId::incubate(0), StageId::incubate(1)));
        assert!(!plan.waits_for(StageId::incubate(1), StageId::incubate(0)));
    }

    #[test]
    fn a_long_chain_of_modules_each_after_all_earlier_ones_is_planned_at_once() {
        // sequential's order: 2^k paths from the last module back to the meta model
        let k = 48;
        let deps: Vec<Vec<usize>> = (0..k).map(|i| (0..i).collect()).collect();
        let plan = StagePlan::assembling(&deps, Baseline::Beside).unwrap();
        assert_eq!(
            plan.nearest(StageId::ASSEMBLE, |_| true),
            [StageId::incubate(k - 1)]
        );
        assert!(plan.waits_for(StageId::incubate(k - 1), StageId::META));
        assert!(!plan.waits_for(StageId::incubate(k - 1), StageId::E2E));
    }

    #[test]
    fn impossible_orders_are_refused_with_the_modules_named() {
        let plan = |deps: &[Vec<usize>]| StagePlan::assembling(deps, Baseline::Beside);
        assert_eq!(plan(&[]), Err(PlanError::NoModules));
        let own = plan(&[vec![], vec![1]]).unwrap_err();
        assert_eq!(own.to_string(), "module 1 depends on itself (of 2 modules)");
        let out = plan(&[vec![5], vec![]]).unwrap_err();
        assert!(
            out.to_string().contains("module 5, which is out of range"),
            "{out}"
        );
        let ring = plan(&[vec![], vec![2], vec![3], vec![1]]).unwrap_err();
        assert_eq!(
            ring,
            PlanError::Cycle {
                modules: vec![1, 2, 3]
            }
        );
        assert!(ring.to_string().contains("in a ring"));
    }
}
