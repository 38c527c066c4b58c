//! The dashboard's UI driven headless by egui's own test harness: tabs switch, the pipeline
//! shows every stage with its status, and the comparison appears when the run has finished.

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use incubator_dashboard::app::{DashboardApp, Tab};
use incubator_dashboard::store::Run;
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
                epochs: 1,
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
    assert_eq!(harness.state().tab, Tab::Curves);
    harness.get_by_label("Pipeline").click();
    harness.run_steps(2);
    assert_eq!(harness.state().tab, Tab::Pipeline);
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
    let s = &harness.state().curves;
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
