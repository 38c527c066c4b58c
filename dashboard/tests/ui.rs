//! The dashboard's UI driven headless by egui's own test harness: tabs switch, the pipeline
//! shows every stage with its status, and the comparison appears when the run has finished.

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use incubator_dashboard::store::Run;
use incubator_dashboard::views::curves::CurvesView;
use incubator_dashboard::DashboardApp;
use incubator_events::{Event, Record, StageId};

fn finished_run() -> Run {
    let mut run = Run::new("demo");
    let mut t = 0.0;
    let mut stage = |run: &mut Run, id: StageId, top1: f64, gflop: f64| {
        t += 1.0;
        run.apply(&Record::new(
            id,
            t,
            Event::StageStarted {
                host: "node3".into(),
                pid: 7,
                epochs: 1,
                steps_per_epoch: 3,
                resumed_epochs: 0,
                params_total: 10,
                params_trainable: 10,
                depends_on: vec![],
                needs: None,
                held_s: None,
                queued_s: None,
            },
        ));
        for step in 1..=3 {
            t += 1.0;
            run.apply(&Record::new(
                id,
                t,
                Event::TrainStep {
                    step,
                    epoch: step as f64 / 3.0,
                    loss: 2.0 / step as f64,
                    lr: 1e-3,
                    grad_norm: 1.0,
                    samples_per_sec: 100.0,
                    terms: Default::default(),
                },
            ));
        }
        run.apply(&Record::new(
            id,
            t,
            Event::StageFinished {
                wall_s: 3.0,
                train_gflop: gflop,
                top1,
                top5: 1.0,
                best_top1: top1,
                best_epoch: 1,
                best_split: Default::default(),
                val_top1: f64::NAN,
                epochs: 1,
                teachers: Vec::new(),
            },
        ));
    };
    stage(&mut run, StageId::META, 0.8, 10.0);
    for i in 0..3 {
        stage(&mut run, StageId::incubate(i), 0.82, 20.0);
    }
    stage(&mut run, StageId::ASSEMBLE, 0.91, 30.0);
    stage(&mut run, StageId::E2E, 0.9, 100.0);
    run
}

#[test]
fn tabs_switch_and_each_view_shows_the_run() {
    let app = DashboardApp::with_runs(vec![finished_run()]);
    let mut harness = Harness::new_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    harness.run_steps(2);
    assert_eq!(harness.state().open_id(), "curves");
    harness.get_by_label("Pipeline").click();
    harness.run_steps(2);
    assert_eq!(harness.state().open_id(), "pipeline");
    for slug in ["meta", "incubate-0", "incubate-2", "assemble", "e2e"] {
        harness.get_by_label(slug);
    }
    assert_eq!(
        harness.get_all_by_label("node3 pid 7").count(),
        6,
        "where each stage ran"
    );
    harness.get_by_label("Compare").click();
    harness.run_steps(2);
    harness.get_by_label("91.00 %");
    harness.get_by_label("+1.00 points");
    harness.get_by_label("1.00x"); // (10 + 3 x 20 + 30) / 100 GFLOP
}

#[test]
fn curve_controls_change_the_settings() {
    let app = DashboardApp::with_runs(vec![finished_run()]);
    let mut harness = Harness::new_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    harness.run_steps(2);
    harness.get_by_label("log y").click();
    harness.get_by_label("epoch").click();
    // the stage filter comes before the plots' legends, which have an "e2e" entry too
    harness
        .get_all_by_role_and_label(egui::accesskit::Role::CheckBox, "e2e")
        .next()
        .unwrap()
        .click(); // hides the baseline's curves
    harness.run_steps(2);
    let s = &harness.state().view::<CurvesView>().unwrap().settings;
    assert!(s.log_y);
    assert_eq!(s.x_axis, incubator_dashboard::series::XAxis::Epoch);
    assert!(s.hidden_stages.contains("e2e"));
}

#[test]
fn a_plugins_loss_terms_get_a_plot_of_their_own() {
    let mut run = Run::new("demo");
    for step in 1..=3u64 {
        run.apply(&Record::new(
            StageId::incubate(1),
            step as f64,
            Event::TrainStep {
                step,
                epoch: step as f64 / 3.0,
                loss: 1.0,
                lr: 1e-3,
                grad_norm: 1.0,
                samples_per_sec: 100.0,
                terms: [
                    ("recon".to_string(), 0.5),
                    ("aux_ce".to_string(), 2.0 / step as f64),
                ]
                .into(),
            },
        ));
    }
    let terms = incubator_dashboard::views::curves::term_lines(
        std::slice::from_ref(&run),
        &Default::default(),
        (f64::NEG_INFINITY, f64::INFINITY),
        1000,
    );
    let names: Vec<&str> = terms.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["incubate-1 aux_ce", "incubate-1 recon"]);
    assert_eq!(terms[0].1, [[1.0, 2.0], [2.0, 1.0], [3.0, 2.0 / 3.0]]);
    let app = DashboardApp::with_runs(vec![run]);
    let mut harness = Harness::new_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    harness.run_steps(2);
    harness.get_by_label("loss terms");
    // the legend names each term
    harness.get_by_label("incubate-1 recon");
}

/// Records of one process's time on a stage: start, three steps, then `end`.
#[allow(clippy::too_many_arguments)]
fn process(
    run: &mut Run,
    id: StageId,
    host: &str,
    pid: u32,
    (t0, t1): (f64, f64),
    resumed: bool,
    depends_on: Vec<usize>,
    queued: Option<(f64, f64)>,
    end: Option<Event>,
) {
    run.apply(&Record::new(
        id,
        t0,
        Event::StageStarted {
            host: host.into(),
            pid,
            epochs: 2,
            steps_per_epoch: 3,
            resumed_epochs: usize::from(resumed),
            params_total: 10,
            params_trainable: 10,
            depends_on,
            needs: None, // as logs before plans: the dashboard plans from the modules
            held_s: queued.map(|q| q.0),
            queued_s: queued.map(|q| q.1),
        },
    ));
    for i in 1..=3u64 {
        run.apply(&Record::new(
            id,
            t0 + (t1 - t0) * i as f64 / 3.0,
            Event::TrainStep {
                step: i,
                epoch: i as f64 / 3.0,
                loss: 1.0,
                lr: 1e-3,
                grad_norm: 1.0,
                samples_per_sec: 100.0,
                terms: Default::default(),
            },
        ));
    }
    if let Some(e) = end {
        run.apply(&Record::new(id, t1, e));
    }
}

fn done(top1: f64, gflop: f64, wall_s: f64) -> Option<Event> {
    Some(Event::StageFinished {
        wall_s,
        train_gflop: gflop,
        top1,
        top5: 1.0,
        best_top1: top1,
        best_epoch: 2,
        best_split: Default::default(),
        val_top1: f64::NAN,
        epochs: 2,
        teachers: Vec::new(),
    })
}

/// Meta on one process, three incubations side by side (module 1 interrupted, then resumed by
/// another process), assembly, and the baseline on another host.
fn parallel_run() -> Run {
    let mut run = Run::new("par");
    process(
        &mut run,
        StageId::META,
        "node1",
        1,
        (0.0, 10.0),
        false,
        vec![],
        None,
        done(0.5, 10.0, 10.0),
    );
    process(
        &mut run,
        StageId::incubate(0),
        "node1",
        2,
        (11.0, 30.0),
        false,
        vec![],
        None,
        done(0.6, 20.0, 19.0),
    );
    let stop = Event::StageInterrupted {
        signal: "SIGTERM".into(),
        message: "stopped".into(),
    };
    process(
        &mut run,
        StageId::incubate(1),
        "node1",
        3,
        (11.0, 20.0),
        false,
        vec![],
        None,
        Some(stop),
    );
    process(
        &mut run,
        StageId::incubate(1),
        "node1",
        5,
        (22.0, 35.0),
        true,
        vec![],
        None,
        done(0.6, 20.0, 22.0),
    );
    process(
        &mut run,
        StageId::incubate(2),
        "node1",
        4,
        (12.0, 31.0),
        false,
        vec![],
        None,
        done(0.6, 20.0, 19.0),
    );
    process(
        &mut run,
        StageId::ASSEMBLE,
        "node1",
        6,
        (40.0, 50.0),
        false,
        vec![],
        None,
        done(0.9, 30.0, 10.0),
    );
    process(
        &mut run,
        StageId::E2E,
        "node2",
        9,
        (0.0, 60.0),
        false,
        vec![],
        None,
        done(0.88, 100.0, 60.0),
    );
    run
}

#[test]
fn the_timeline_shows_processes_as_lanes_and_whether_incubations_overlapped() {
    let mut app = DashboardApp::with_runs(vec![parallel_run()]);
    assert!(app.open_view("timeline"));
    let mut harness = Harness::new_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    harness.run_steps(2);
    harness.get_by_label("up to 3 of the 3 incubations ran at once");
    for lane in ["node1 pid 1", "node1 pid 5", "node2 pid 9"] {
        harness.get_by_label(lane);
    }
    harness.get_by_label("incubate-1 interrupted (11.0-20.0 s)");
    harness.get_by_label("incubate-1 resumed, finished (22.0-35.0 s)");
    // the assembly could start at 35 s (the last module finished) and started at 40 s
    harness.get_by_label("assemble waiting for a worker (35.0-40.0 s)");
    let state: serde_json::Value =
        serde_json::from_str(&incubator_dashboard::app::state_json(harness.state())).unwrap();
    assert_eq!(state["view"], "timeline");
    assert_eq!(state["shows"]["lanes"].as_array().unwrap().len(), 7);
    assert_eq!(
        state["shows"]["lanes"][0]["name"], "node1 pid 1",
        "lanes in start order"
    );
}

#[test]
fn stages_one_process_runs_at_once_get_rows_of_their_own() {
    // `incubator run`: every stage in one process, the baseline on a thread beside the method
    let mut run = Run::new("one");
    process(
        &mut run,
        StageId::E2E,
        "vm",
        7,
        (0.0, 60.0),
        false,
        vec![],
        None,
        done(0.8, 9.0, 60.0),
    );
    process(
        &mut run,
        StageId::META,
        "vm",
        7,
        (0.0, 10.0),
        false,
        vec![],
        None,
        done(0.5, 1.0, 10.0),
    );
    for i in 0..2usize {
        let t = 10.0 + 10.0 * i as f64;
        process(
            &mut run,
            StageId::incubate(i),
            "vm",
            7,
            (t, t + 10.0),
            false,
            vec![],
            None,
            done(0.6, 1.0, 10.0),
        );
    }
    let lanes = incubator_dashboard::views::timeline::lanes(&run);
    assert_eq!(lanes.len(), 1);
    // the baseline beside the method's stages, and module 1 waiting (from 10 s, when the meta
    // model finished) beside module 0 until a worker was free
    assert_eq!(lanes[0].rows, 3);
    let row = |stage: &str| lanes[0].bars.iter().find(|b| b.stage == stage).unwrap().row;
    assert_ne!(row("e2e"), row("meta"));
    assert_eq!(
        row("meta"),
        row("incubate-0"),
        "one after the other share a row"
    );
    assert_ne!(row("incubate-0"), row("incubate-1"));
    let mut app = DashboardApp::with_runs(vec![run]);
    app.open_view("timeline");
    let mut harness = Harness::new_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    harness.run_steps(2);
    harness.get_by_label("the 2 incubations ran one at a time");
}

#[test]
fn the_timeline_says_when_modules_waited_for_each_other_and_for_slurm() {
    // `sequential` on Slurm: each module held until the one before finished, then queued
    let mut run = Run::new("seq");
    process(
        &mut run,
        StageId::META,
        "n1",
        1,
        (0.0, 10.0),
        false,
        vec![],
        Some((0.0, 4.0)),
        done(0.5, 1.0, 10.0),
    );
    for i in 0..3usize {
        let t = 10.0 + 10.0 * i as f64;
        let deps = if i == 0 { vec![] } else { vec![i - 1] };
        let wait = (t + 4.0, 2.0); // submitted with meta (at -4 s), held until t, queued 2 s
        process(
            &mut run,
            StageId::incubate(i),
            "n1",
            10 + i as u32,
            (t + 2.0, t + 10.0),
            false,
            deps,
            Some(wait),
            done(0.6, 1.0, 8.0),
        );
    }
    let mut app = DashboardApp::with_runs(vec![run]);
    app.open_view("timeline");
    let mut harness = Harness::new_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    harness.run_steps(2);
    harness.get_by_label("the 3 incubations ran one at a time");
    // the meta job queued 4 s before it started: the axis starts at its submission
    harness.get_by_label("meta queued (Slurm) (0.0-4.0 s)");
    harness.get_by_label("incubate-2 held for dependencies (Slurm) (0.0-34.0 s)");
    harness.get_by_label("incubate-2 queued (Slurm) (34.0-36.0 s)");
}

/// A sweep: two configurations, two seeds each, as the dashboard opens a sweep directory.
fn sweep_runs() -> Vec<Run> {
    let mut runs = Vec::new();
    for (point, lr, shift) in [("lr=0.1", "0.1", 0.0), ("lr=0.2", "0.2", 0.02)] {
        for seed in 0..2u32 {
            let mut run = Run::new(format!("{point}/seed{seed}"));
            run.group = Some(point.into());
            run.config = Some(format!("seed = {seed}\n[optim]\nbase_lr = {lr}\n"));
            let s = f64::from(seed) * 0.01;
            process(
                &mut run,
                StageId::META,
                "h",
                1,
                (0.0, 1.0),
                false,
                vec![],
                None,
                done(0.5, 10.0, 1.0),
            );
            process(
                &mut run,
                StageId::incubate(0),
                "h",
                2,
                (1.0, 2.0),
                false,
                vec![],
                None,
                done(0.6, 20.0, 1.0),
            );
            process(
                &mut run,
                StageId::ASSEMBLE,
                "h",
                3,
                (2.0, 3.0),
                false,
                vec![],
                None,
                done(0.80 + shift + s, 30.0, 1.0),
            );
            process(
                &mut run,
                StageId::E2E,
                "h",
                4,
                (0.0, 3.0),
                false,
                vec![],
                None,
                done(0.79 + s, 90.0, 3.0),
            );
            runs.push(run);
        }
    }
    runs
}

#[test]
fn accuracy_against_cost_has_a_point_per_configuration_with_its_spread() {
    let app = DashboardApp::with_runs(sweep_runs());
    let ws = &app.workspace;
    let marks = incubator_dashboard::views::cost::marks(
        ws,
        incubator_dashboard::views::cost::CostAxis::Compute,
    );
    assert_eq!(marks.len(), 4, "method and E2E of two configurations");
    let m = &marks[2];
    assert_eq!((m.configuration.as_str(), m.e2e), ("lr=0.2", false));
    assert!((m.top1.mean - 0.825).abs() < 1e-12 && m.top1.n == 2);
    assert!((m.top1.sd - 0.01 / 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(m.x.mean, 60.0, "meta + incubation + fine-tune");
    assert_eq!(
        m.differs,
        [("optim.base_lr".to_string(), "0.2".to_string())],
        "the seed is not a difference"
    );
    let mut app = app;
    app.open_view("cost");
    let mut harness = Harness::new_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    harness.run_steps(2);
    // hovering a point names its configuration, its numbers and what sets it apart
    let state: serde_json::Value =
        serde_json::from_str(&incubator_dashboard::app::state_json(harness.state())).unwrap();
    let drawn = state["shows"]["drawn"].as_array().unwrap();
    let mark = drawn
        .iter()
        .find(|d| d["configuration"] == "lr=0.2" && d["e2e"] == false)
        .unwrap();
    let at = egui::pos2(
        mark["at"][0].as_f64().unwrap() as f32,
        mark["at"][1].as_f64().unwrap() as f32,
    );
    harness.hover_at(at);
    harness.run_steps(2);
    harness.get_by_label("optim.base_lr = 0.2");
    harness.get_by_label("top-1 82.50 ± 0.71 % over 2 seed(s)");
    harness
        .get_by_label("wall time, a machine per module (s)")
        .click();
    harness.run_steps(2);
    let state: serde_json::Value =
        serde_json::from_str(&incubator_dashboard::app::state_json(harness.state())).unwrap();
    assert_eq!(state["shows"]["x"], "wall_side_by_side");
    assert_eq!(state["shows"]["points"][0]["x"], 3.0);
    assert!(
        state["link"]
            .as_str()
            .unwrap()
            .contains("wall_side_by_side"),
        "the link holds the axis"
    );
}

#[test]
fn a_sweep_is_compared_per_configuration_with_intervals_and_drawn_as_bands() {
    let app = DashboardApp::with_runs(sweep_runs());
    let mut harness = Harness::new_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    harness.run_steps(2);
    harness
        .get_by_label("mean ± band per configuration")
        .click();
    harness.run_steps(2);
    let state: serde_json::Value =
        serde_json::from_str(&incubator_dashboard::app::state_json(harness.state())).unwrap();
    assert_eq!(state["shows"]["by_configuration"], true);
    let lines = state["shows"]["lines"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l == "lr=0.2/e2e (2 runs)"),
        "{lines:?}"
    );
    harness.get_by_label("Compare").click();
    harness.run_steps(2);
    harness.get_by_label("Per configuration, over seeds");
    // lr=0.2: differences +3.00 and +3.00 points: sd 0, the interval is the point itself
    harness.get_by_label("+3.00 [+3.00, +3.00] *");
    assert_eq!(
        harness.get_all_by_label("2 of 2").count(),
        2,
        "both seeds of both configurations"
    );
}

#[test]
fn a_link_restores_the_view_and_its_selections() {
    let mut app = DashboardApp::with_runs(vec![parallel_run(), finished_run()]);
    app.open_view("timeline");
    app.follow_link("view=timeline&state=%7B%22run%22%3A%22demo%22%7D");
    let link = app.link();
    let mut other = DashboardApp::with_runs(vec![parallel_run(), finished_run()]);
    assert!(other.follow_link(&format!("#{link}")));
    assert_eq!(other.open_id(), "timeline");
    let state: serde_json::Value =
        serde_json::from_str(&incubator_dashboard::app::state_json(&other)).unwrap();
    assert_eq!(state["shows"]["run"], "demo");
    assert!(!other.follow_link("view=nonsense"));
    assert_eq!(
        other.open_id(),
        "timeline",
        "an unknown view changes nothing"
    );
    // the native app's memory: every view's state
    app.view_mut::<CurvesView>().unwrap().settings.log_y = true;
    let memory = app.memory();
    let mut fresh = DashboardApp::with_runs(vec![]);
    fresh.restore(serde_json::from_str(&serde_json::to_string(&memory).unwrap()).unwrap());
    assert_eq!(fresh.open_id(), "timeline");
    assert!(fresh.view::<CurvesView>().unwrap().settings.log_y);
}
