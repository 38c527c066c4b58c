//! m2mKD loaded from its library trains bit-identically to m2mKD compiled in, taught by the
//! E2E model of another run directory, which it leaves untouched; a teacher that is not there
//! is refused with what to do.

use incubator_core::config::RunConfig;
use incubator_core::events::{Event, StageId};
use incubator_core::plugin::selfcheck;
use incubator_core::stages::{e2e, Engine, PluginSources};
use incubator_core::telemetry::jsonl::read_events;

fn teacher_run(root: &std::path::Path) {
    let text = selfcheck::TINY_TOML.replace("[e2e]\nepochs = 8\n", "[e2e]\nepochs = 2\n");
    let cfg = RunConfig::from_toml(&text, "teacher").unwrap();
    let mut engine = Engine::open(
        root,
        Some(&cfg),
        &PluginSources {
            // (its library: linking two plugin crates would clash on their entry points)
            builtins: &|_| {},
            extra: vec![selfcheck::library_next_to_test("incubator-deep-incubation")],
        },
    )
    .unwrap();
    engine.show_progress = false;
    e2e::run(&engine).unwrap();
}

#[test]
fn loaded_library_trains_bit_identically_taught_by_another_runs_model() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    teacher_run(&teacher);
    let teacher_file = teacher.join("stages/e2e/model.safetensors");
    let before = std::fs::read(&teacher_file).unwrap();
    let plugins = format!(
        "[plugins]\nstrategy = \"m2mkd\"\n[plugins.options]\nteacher = \"{}:e2e\"\nalpha = 0.5\n",
        teacher.display()
    );
    let (compiled, _) = selfcheck::check_plugin(
        incubator_m2mkd::register,
        "incubator-m2mkd",
        &plugins,
        &dir.path().join("runs"),
    );
    assert_eq!(
        std::fs::read(&teacher_file).unwrap(),
        before,
        "the teacher changed"
    );
    let records = read_events(&compiled.dir).unwrap();
    for i in 0..4 {
        let kd: Vec<f64> = records
            .iter()
            .filter(|r| r.stage == StageId::incubate(i))
            .filter_map(|r| match &r.event {
                Event::TrainStep { terms, .. } => Some(terms["kd"]),
                _ => None,
            })
            .collect();
        // The teacher hybrid differs from the student's: a real distillation signal.
        assert!(
            !kd.is_empty() && kd.iter().all(|v| v.is_finite() && *v > 0.0),
            "{kd:?}"
        );
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                compiled
                    .dir
                    .join(format!("stages/incubate-{i}/summary.json")),
            )
            .unwrap(),
        )
        .unwrap();
        let top1 = summary["top1"].as_f64().unwrap();
        assert!(top1 > 0.2, "module {i}'s hybrid: {top1}, chance is 0.1");
    }

    let missing = format!(
        "[plugins]\nstrategy = \"m2mkd\"\n[plugins.options]\nteacher = \"{}:e2e\"\n",
        dir.path().join("no-such-run").display()
    );
    let e = selfcheck::compiled_in_vs_library(
        incubator_m2mkd::register,
        &selfcheck::library_next_to_test("incubator-m2mkd"),
        &[selfcheck::library_next_to_test("incubator-deep-incubation")],
        &missing,
        &dir.path().join("refused"),
    )
    .err()
    .expect("a missing teacher is refused");
    let e = format!("{e:#}");
    assert!(
        e.contains("no-such-run") && e.contains("not a run directory"),
        "{e}"
    );
}
