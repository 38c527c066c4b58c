//! The store built from records: stage status, results, needs and the comparison.

use super::*;

fn rec(stage: StageId, time: f64, event: Event) -> Record {
    Record::new(stage, time, event)
}

fn finished(stage: StageId, t: f64, top1: f64, gflop: f64, wall: f64) -> Record {
    rec(
        stage,
        t,
        Event::StageFinished {
            wall_s: wall,
            train_gflop: gflop,
            top1,
            top5: f64::NAN,
            best_top1: top1,
            best_epoch: 1,
            best_split: Default::default(),
            val_top1: f64::NAN,
            epochs: 1,
            teachers: Vec::new(),
        },
    )
}

/// A stage's start: where it ran, its length, what it resumed and what it waits for.
fn start(
    host: &str,
    pid: u32,
    (epochs, steps_per_epoch, resumed_epochs): (usize, usize, usize),
    needs: Option<Vec<StageId>>,
    depends_on: Vec<usize>,
) -> Event {
    Event::StageStarted {
        host: host.into(),
        pid,
        epochs,
        steps_per_epoch,
        resumed_epochs,
        params_total: 1,
        params_trainable: 1,
        depends_on,
        needs,
        held_s: None,
        queued_s: None,
    }
}

/// A one-step stage's start, with what it waits for.
fn started(needs: Option<Vec<StageId>>, depends_on: Vec<usize>) -> Event {
    start("h", 1, (1, 1, 0), needs, depends_on)
}

#[test]
fn a_stage_waits_for_what_its_start_recorded_or_else_for_what_the_plan_of_its_modules_says() {
    let mut run = Run::new("r");
    // taught by the run's baseline: the plan the engine recorded says so
    let taught = vec![StageId::E2E, StageId::META];
    run.apply(&rec(
        StageId::incubate(0),
        1.0,
        started(Some(taught.clone()), vec![]),
    ));
    assert_eq!(run.needs(StageId::incubate(0)), taught);
    // a log from before plans: module 1 after module 0, as its depends_on says
    run.apply(&rec(StageId::incubate(1), 2.0, started(None, vec![0])));
    assert_eq!(
        run.needs(StageId::incubate(1)),
        [StageId::META, StageId::incubate(0)]
    );
    assert_eq!(
        run.needs(StageId::ASSEMBLE),
        [StageId::META, StageId::incubate(0), StageId::incubate(1)]
    );
    assert!(run.needs(StageId::META).is_empty() && run.needs(StageId::E2E).is_empty());
}

#[test]
fn a_stage_goes_from_started_through_steps_to_finished() {
    let mut run = Run::new("r");
    let id = StageId::incubate(2);
    run.apply(&rec(
        id,
        100.0,
        start("node7", 42, (4, 10, 0), None, vec![]),
    ));
    for step in 1..=20u64 {
        run.apply(&rec(
            id,
            100.0 + step as f64,
            Event::TrainStep {
                step,
                epoch: step as f64 / 10.0,
                loss: 2.0 / step as f64,
                lr: 1e-3,
                grad_norm: 1.0,
                samples_per_sec: 500.0,
                terms: Default::default(),
            },
        ));
    }
    let s = run.stage(id).unwrap();
    assert_eq!(
        (s.status, s.host.as_str(), s.loss.len()),
        (Status::Running, "node7", 20)
    );
    assert!((s.progress() - 0.5).abs() < 1e-12);
    assert!(
        (s.eta_s().unwrap() - 20.0).abs() < 1e-9,
        "20 s done at half way"
    );
    assert_eq!(
        s.loss.time[0], 1.0,
        "time axis starts at the run's first record"
    );
    run.apply(&finished(id, 200.0, 0.9, 5.0, 100.0));
    assert_eq!(run.stage(id).unwrap().status, Status::Finished);
    assert_eq!(run.stage(id).unwrap().progress(), 1.0);
    assert_eq!(run.records, 22);
}

#[test]
fn an_interrupted_stage_says_so_until_a_process_resumes_it() {
    let mut run = Run::new("r");
    let id = StageId::incubate(1);
    let started = |t: f64, pid: u32, resumed_epochs: usize| {
        rec(
            id,
            t,
            start("node1", pid, (3, 10, resumed_epochs), None, vec![]),
        )
    };
    run.apply(&started(1.0, 10, 0));
    run.apply(&rec(
        id,
        2.0,
        Event::StageInterrupted {
            signal: "SIGTERM".into(),
            message: "incubate-1 stopped by SIGTERM at epoch 2 step 4/10".into(),
        },
    ));
    let s = run.stage(id).unwrap();
    assert_eq!(s.status, Status::Interrupted);
    assert!(s.error.as_deref().unwrap().contains("SIGTERM"));
    run.apply(&started(3.0, 11, 1));
    let s = run.stage(id).unwrap();
    assert_eq!(
        (s.status, s.pid, s.error.clone()),
        (Status::Running, 11, None)
    );
    assert_eq!(s.epoch, 1.0);
}

#[test]
fn comparison_needs_every_method_stage_and_counts_the_meta_model() {
    let mut run = Run::new("r");
    run.apply(&finished(StageId::META, 1.0, 0.8, 10.0, 5.0));
    run.apply(&finished(StageId::incubate(0), 2.0, 0.8, 20.0, 7.0));
    run.apply(&rec(
        StageId::incubate(1),
        2.0,
        Event::StageFailed {
            error: "boom".into(),
        },
    ));
    run.apply(&finished(StageId::ASSEMBLE, 3.0, 0.9, 30.0, 9.0));
    assert!(run.comparison().is_none(), "module 1 failed");
    run.apply(&finished(StageId::incubate(1), 4.0, 0.8, 20.0, 8.0));
    run.apply(&finished(StageId::E2E, 5.0, 0.85, 40.0, 30.0));
    let c = run.comparison().unwrap();
    assert_eq!(c.assembled_top1, 0.9);
    assert_eq!(c.method_gflop, 80.0);
    assert_eq!(c.method_wall_s, 29.0);
    assert_eq!(c.method_parallel_wall_s, 5.0 + 8.0 + 9.0);
    assert_eq!(c.cost_ratio(), Some(2.0));
    assert_eq!(c.e2e.map(|e| e.top1), Some(0.85));
}

#[test]
fn side_by_side_wall_time_follows_the_dependencies_the_events_name() {
    // `sequential`: module 1 waited for module 0, so nothing ran side by side
    let mut run = Run::new("r");
    run.apply(&finished(StageId::META, 1.0, 0.8, 10.0, 5.0));
    for (i, wall) in [(0usize, 7.0), (1, 8.0)] {
        let depends_on = if i == 1 { vec![0] } else { vec![] };
        run.apply(&rec(StageId::incubate(i), 2.0, started(None, depends_on)));
        run.apply(&finished(StageId::incubate(i), 3.0, 0.8, 20.0, wall));
    }
    run.apply(&finished(StageId::ASSEMBLE, 4.0, 0.9, 30.0, 9.0));
    let c = run.comparison().unwrap();
    assert_eq!(c.method_parallel_wall_s, 5.0 + 7.0 + 8.0 + 9.0);
    assert_eq!(c.method_parallel_wall_s, c.method_wall_s);
}
