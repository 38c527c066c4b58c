//! Which stage of a plan runs next: each once every stage it needs has finished, the earliest
//! in plan order first; a stage that needs a failed one is never started.

use super::plan::StagePlan;
use crate::events::StageId;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Waiting,
    Running,
    Done,
    Failed,
    /// Never to start: something it needs failed.
    Blocked,
}

/// What a worker does now.
#[derive(Debug, PartialEq)]
pub enum Next {
    Run(StageId),
    /// Nothing is ready yet, but running stages may make something ready.
    Wait,
    /// Nothing is left that can run.
    Finished,
}

/// The progress of a plan's stages through one runner.
pub struct Worklist<'p> {
    plan: &'p StagePlan,
    state: Vec<State>,
}

impl<'p> Worklist<'p> {
    pub fn new(plan: &'p StagePlan) -> Worklist<'p> {
        let state = vec![State::Waiting; plan.stages().len()];
        Worklist { plan, state }
    }

    fn state_of(&self, id: StageId) -> State {
        let i = self.index(id);
        self.state[i]
    }

    fn index(&self, id: StageId) -> usize {
        self.plan
            .stages()
            .iter()
            .position(|s| s.id == id)
            .expect("the worklist hands out only its plan's stages")
    }

    /// The next stage to run (marked running), or why there is none.
    pub fn next(&mut self) -> Next {
        for i in 0..self.state.len() {
            if self.state[i] != State::Waiting {
                continue;
            }
            let needs = &self.plan.stages()[i].needs;
            let states: Vec<State> = needs.iter().map(|&n| self.state_of(n)).collect();
            if states
                .iter()
                .any(|s| matches!(s, State::Failed | State::Blocked))
            {
                self.state[i] = State::Blocked;
            } else if states.iter().all(|&s| s == State::Done) {
                self.state[i] = State::Running;
                return Next::Run(self.plan.stages()[i].id);
            }
        }
        if self.state.contains(&State::Running) {
            Next::Wait
        } else {
            Next::Finished
        }
    }

    /// Stage `id` ended: finished (`ok`) or failed.
    pub fn done(&mut self, id: StageId, ok: bool) {
        let i = self.index(id);
        self.state[i] = if ok { State::Done } else { State::Failed };
    }

    /// The stages that never started because a stage they need failed.
    pub fn blocked(&self) -> Vec<StageId> {
        self.plan
            .stages()
            .iter()
            .zip(&self.state)
            .filter(|(_, s)| **s == State::Blocked)
            .map(|(p, _)| p.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::plan::Baseline;

    #[test]
    fn one_worker_runs_the_plan_in_order() {
        let plan = StagePlan::assembling(&[vec![], vec![]], Baseline::Beside).unwrap();
        let mut s = Worklist::new(&plan);
        let mut ran = Vec::new();
        while let Next::Run(id) = s.next() {
            ran.push(id.slug());
            s.done(id, true);
        }
        assert_eq!(ran, ["meta", "incubate-0", "incubate-1", "assemble", "e2e"]);
        assert_eq!(s.next(), Next::Finished);
    }

    #[test]
    fn workers_get_independent_stages_and_wait_for_the_rest() {
        let plan = StagePlan::assembling(&[vec![], vec![]], Baseline::Beside).unwrap();
        let mut s = Worklist::new(&plan);
        assert_eq!(s.next(), Next::Run(StageId::META));
        assert_eq!(
            s.next(),
            Next::Run(StageId::E2E),
            "the baseline beside the meta model"
        );
        assert_eq!(s.next(), Next::Wait);
        s.done(StageId::META, true);
        assert_eq!(s.next(), Next::Run(StageId::incubate(0)));
        assert_eq!(s.next(), Next::Run(StageId::incubate(1)));
        assert_eq!(s.next(), Next::Wait);
    }

    #[test]
    fn what_needs_a_failed_stage_never_starts_and_the_rest_still_runs() {
        // module 1 after module 0
        let plan = StagePlan::assembling(&[vec![], vec![0], vec![]], Baseline::Beside).unwrap();
        let mut s = Worklist::new(&plan);
        assert_eq!(s.next(), Next::Run(StageId::META));
        s.done(StageId::META, true);
        assert_eq!(s.next(), Next::Run(StageId::incubate(0)));
        s.done(StageId::incubate(0), false);
        let mut ran = Vec::new();
        while let Next::Run(id) = s.next() {
            ran.push(id);
            s.done(id, true);
        }
        assert_eq!(ran, [StageId::incubate(2), StageId::E2E]);
        assert_eq!(s.blocked(), [StageId::incubate(1), StageId::ASSEMBLE]);
        assert_eq!(s.next(), Next::Finished);
    }
}
