//! m2mKD loaded from its library trains bit-identically to m2mKD compiled in, taught by the
//! E2E model of another run directory, which it leaves untouched; a teacher that is not there
//! is refused with what to do.

use incubator_core::config::RunConfig;
use incubator_core::events::{Event, StageId};
use incubator_core::stages::plan::{Baseline, StagePlan};
use incubator_core::stages::{e2e, Engine, PluginSources};
use incubator_core::telemetry::jsonl::read_events;
use incubator_testkit as testkit;

fn teacher_run(root: &std::path::Path) {
    let text = testkit::with_keys(testkit::TINY_TOML, &[("e2e.epochs", "2")]);
    let cfg = RunConfig::from_toml(&text, "teacher").unwrap();
    let mut engine = Engine::open(
        root,
        Some(&cfg),
        incubator_core::run_dir::OpenMode::Start,
        &PluginSources {
            // (its library: linking two plugin crates would clash on their entry points)
            builtins: &|_| {},
            extra: vec![testkit::library_next_to_test("incubator-deep-incubation")],
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
    let (compiled, _) = testkit::check_plugin(
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

    // the teacher's training is the method's cost, counted once for the four incubations
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let teacher_gflop = read(teacher.join("stages/e2e/summary.json"))["train_gflop"]
        .as_f64()
        .unwrap();
    assert!(teacher_gflop > 0.0);
    let mut method = 0.0;
    for stage in [
        "meta",
        "incubate-0",
        "incubate-1",
        "incubate-2",
        "incubate-3",
        "assemble",
    ] {
        let s = read(compiled.dir.join(format!("stages/{stage}/summary.json")));
        method += s["train_gflop"].as_f64().unwrap();
        if stage.starts_with("incubate") {
            assert_eq!(
                s["teachers"][0]["gflop"].as_f64(),
                Some(teacher_gflop),
                "{s}"
            );
            assert!(s["teachers"][0]["spec"].as_str().unwrap().ends_with(":e2e"));
        }
    }
    let run = incubator_core::run_dir::RunDir::at(&compiled.dir);
    let report = incubator_core::stages::report::Report::from_run(
        &run,
        &StagePlan::assembling(&[vec![], vec![], vec![], vec![]], Baseline::Beside).unwrap(),
    )
    .unwrap();
    assert_eq!(report.teacher_gflop, teacher_gflop);
    assert!(
        (report.method_gflop - (method + teacher_gflop)).abs() < 1e-6 * method,
        "{} vs {method} + {teacher_gflop}",
        report.method_gflop
    );
    assert!(report.method.ends_with(":e2e"), "{}", report.method);

    let missing = format!(
        "[plugins]\nstrategy = \"m2mkd\"\n[plugins.options]\nteacher = \"{}:e2e\"\n",
        dir.path().join("no-such-run").display()
    );
    let e = testkit::compiled_in_vs_library(
        incubator_m2mkd::register,
        &testkit::library_next_to_test("incubator-m2mkd"),
        &[testkit::library_next_to_test("incubator-deep-incubation")],
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

/// The teacher hybrid m2mKD builds is teacher module i followed by the meta model's later
/// layers, and training the student leaves it bit-identical (and the student's prefix too).
#[test]
fn the_teacher_hybrid_is_teacher_module_i_then_the_meta_suffix_and_stays_frozen() {
    use incubator_core::checkpoint::params_of;
    use incubator_core::device::new_device;
    use incubator_core::model::{Init, Network};
    use incubator_core::plugin::{HybridInputs, IncubationStrategy, PluginContext};
    use incubator_core::split::Split;
    use incubator_core::train::{self, TrainJob};
    use rand::SeedableRng;

    let cfg = RunConfig::from_toml(testkit::TINY_TOML, "tiny").unwrap();
    let mut data = incubator_core::data::load(&cfg.data.dataset, None, &cfg.cache_dir()).unwrap();
    data.train.truncate(256);
    data.test.truncate(64);
    let t = &data.train;
    let vit = cfg.vit(t.height, t.channels, t.num_classes).unwrap();
    let split = Split::resolve(&cfg, &vit).unwrap();
    let dev = new_device(0);
    let ctx = PluginContext {
        vit: &vit,
        split: &split,
        cfg: &cfg,
    };
    let net = |seed: u64, depths: &[usize]| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Network::vit(
            &mut Init {
                dev: &dev,
                rng: &mut rng,
            },
            &vit,
            depths,
        )
    };
    let (i, k) = (1, split.k());
    let meta = || net(1, &vec![1; k]);
    let teacher = || net(2, &split.divided_depths);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let inputs = HybridInputs {
        module: i,
        meta: meta(),
        unit: net(4, &split.divided_depths).split_off(i..i + 1),
        finished: Default::default(),
        load_meta: &|| Ok(meta()),
        load_teacher: &|spec| {
            assert_eq!(spec, "e2e");
            Ok(teacher())
        },
        init: Init {
            dev: &dev,
            rng: &mut rng,
        },
    };
    let mut hybrid = incubator_m2mkd::M2mKd.hybrid(&ctx, inputs).unwrap();

    // teacher module i, then meta layers i+1.. (parameter names are the suffix network's own)
    let mut want = teacher().split_off(i..i + 1);
    want.parts.extend(meta().split_off(i + 1..k).parts);
    let want = params_of(&want);
    let got_before = params_of(hybrid.extras.get("teacher").unwrap());
    assert_eq!(got_before, want, "the teacher hybrid's suffix");

    let trained = hybrid.trained.clone();
    let trainable = hybrid
        .net
        .param_names_of(trained.clone())
        .into_iter()
        .collect();
    let net_before = params_of(&hybrid.net);
    let job = TrainJob {
        stage: incubator_core::events::StageId::incubate(i),
        cfg: &cfg,
        vit: &vit,
        recipe: cfg.incubate,
        data: &incubator_core::data::Data::Memory(data.clone()),
        first_traced: trained.start,
        trainable,
        taps: hybrid.taps.iter().map(|t| t.position()).collect(),
        loss: &*hybrid.loss,
        settings: None,
        state_path: None,
        needs: Vec::new(),
    };
    train::train(
        job,
        &mut hybrid.net,
        &mut hybrid.extras,
        &dev,
        &mut incubator_core::train::observe::Observers::none(),
    )
    .unwrap();
    assert_eq!(
        params_of(hybrid.extras.get("teacher").unwrap()),
        got_before,
        "the teacher changed while the student trained"
    );
    let net_after = params_of(&hybrid.net);
    let names: Vec<String> = hybrid.net.param_names_of(trained);
    for (name, before) in &net_before {
        assert_eq!(
            &net_after[name] == before,
            !names.contains(name),
            "{name}: only the student module may change"
        );
    }
}
