//! Plugin libraries loaded from their files by the real binary: the reference plugins give
//! bit-identical results to the built-ins, and faulty libraries are refused with their reason.

mod common;
use common::*;
use std::path::Path;

const NO_E2E: &str = "[e2e]\nenabled = false\n";

fn without_e2e() -> String {
    let cut = TINY.find("[e2e]").unwrap();
    format!("{}{NO_E2E}", &TINY[..cut])
}

#[test]
fn deep_incubation_loaded_from_its_library_trains_bit_identically_to_the_built_in() {
    let tmp = tempfile::tempdir().unwrap();
    let builtin = tmp.path().join("builtin");
    let cfg = write_config(tmp.path(), &without_e2e());
    assert_ok(
        &incubator(&["run", "-c", &cfg, "-d", builtin.to_str().unwrap()]),
        "built-in run",
    );

    let lib = library("incubator-deep-incubation");
    let dynamic_dir = tmp.path().join("dyn");
    std::fs::create_dir(&dynamic_dir).unwrap();
    let dyn_cfg = write_config(
        &dynamic_dir,
        &format!(
            "{}[plugins]\nbuiltins = false\nlibraries = [{:?}]\n",
            without_e2e(),
            lib.display().to_string()
        ),
    );
    let dynamic = tmp.path().join("dynamic");
    let out = incubator(&["run", "-c", &dyn_cfg, "-d", dynamic.to_str().unwrap()]);
    assert_ok(&out, "run with the library");

    let (a, b) = (model_files(&builtin), model_files(&dynamic));
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), 7, "meta, 4 modules, assembled, fine-tuned");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{name} differs between the built-in and the loaded plugin"
        );
    }

    // `plugins list` shows where each item came from
    let list = incubator(&["plugins", "list", "-c", &dyn_cfg]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(!text.contains("built in"), "{text}");
    assert!(
        text.contains("libincubator_deep_incubation.so") && text.contains("strategy"),
        "{text}"
    );
}

#[test]
fn plugins_check_reports_the_handshake() {
    let out = incubator(&[
        "plugins",
        "check",
        library("incubator-deep-incubation").to_str().unwrap(),
    ]);
    assert_ok(&out, "plugins check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fits this engine") && text.contains("deep-incubation"),
        "{text}"
    );
}

fn check_error(file: &Path) -> String {
    let out = incubator(&["plugins", "check", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{} was accepted", file.display());
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean error exit, not a crash"
    );
    stderr(&out)
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("libnotes.so");
    std::fs::write(&file, "these are notes, not machine code").unwrap();
    let e = check_error(&file);
    assert!(e.contains("cannot load it as a shared library"), "{e}");
    assert!(
        e.contains("file too short") || e.contains("invalid ELF header"),
        "the dynamic linker's own reason, not just \"dlopen failed\": {e}"
    );
    let e = check_error(&tmp.path().join("missing.so"));
    assert!(
        e.contains("missing.so does not exist (no such file)") && e.contains("plugins.libraries"),
        "{e}"
    );
}

#[test]
fn a_library_without_the_entry_symbols_is_refused() {
    // the engine library itself: a real Rust shared library that is not a plugin
    let e = check_error(&library("incubator-core"));
    assert!(
        e.contains("no `INCUBATOR_PLUGIN_ABI` symbol") && e.contains("declare_plugin!"),
        "{e}"
    );
}

#[test]
fn a_library_for_another_abi_is_refused_before_anything_else_is_read() {
    let e = check_error(&library("incubator-test-plugin-future-abi"));
    assert!(
        e.contains("plugin ABI version 2, this engine speaks 1") && e.contains("Rebuild"),
        "{e}"
    );
}

#[test]
fn a_library_built_for_another_engine_is_refused_field_by_field() {
    let e = check_error(&library("incubator-test-plugin-stale-engine"));
    for field in [
        "rustc: plugin built with 1.80.0",
        "engine version: plugin built with 0.0.9, engine has 0.1.0",
        "engine build: plugin built with 0123456789abcdef",
        "features: plugin built with cuda, engine has (none)",
    ] {
        assert!(e.contains(field), "missing {field:?} in:\n{e}");
    }
    assert!(!e.contains("profile:"), "the profile matches: {e}");
    assert!(e.contains("Rebuild the plugin"), "{e}");
}

#[test]
fn a_panicking_plugin_fails_its_stage_and_the_stage_can_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library("incubator-test-plugin-panicking");
    let cfg = write_config(
        tmp.path(),
        &format!(
            "{}[plugins]\nstrategy = \"panicking\"\nlibraries = [{:?}]\n",
            without_e2e(),
            lib.display().to_string()
        ),
    );
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    assert_ok(&incubator(&["meta", "-c", &cfg, "-d", run_s]), "meta");
    let out = incubator(&["incubate", "--module", "1", "-d", run_s]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("stage incubate-1 failed")
            && e.contains("the panicking plugin refuses module 1"),
        "{e}"
    );
    assert!(!run.join("stages/incubate-1/summary.json").exists());
    let events = std::fs::read_to_string(run.join("events/incubate-1.jsonl")).unwrap();
    assert!(
        events.contains("stage_failed") && events.contains("refuses module 1"),
        "{events}"
    );
    // the meta model is untouched and the failed stage is tried again, not skipped
    assert!(run.join("stages/meta/summary.json").exists());
    let again = incubator(&["incubate", "--module", "1", "-d", run_s]);
    assert!(
        stderr(&again).contains("refuses module 1"),
        "{}",
        stderr(&again)
    );
}

/// dfdx's tensor-id counter, a static of the engine library (`B`/`D` there). A plugin that
/// defined its own (it linked a second dfdx) would give its tensors ids that collide with the
/// engine's, and gradients would be mixed up silently.
fn defines_tensor_id_counter(lib: &Path) -> bool {
    let out = std::process::Command::new("nm")
        .arg(lib)
        .output()
        .expect("nm (binutils) runs");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        let mut f = l.split_whitespace().rev();
        let (name, kind) = (f.next().unwrap_or(""), f.next().unwrap_or("U"));
        name.contains("unique_id") && name.contains("COUNTER") && kind != "U"
    })
}

#[test]
fn plugin_libraries_share_the_engines_tensor_id_counter() {
    assert!(defines_tensor_id_counter(&library("incubator-core")));
    for plugin in [
        "incubator-deep-incubation",
        "incubator-m2mkd",
        "incubator-meta-kd",
        "incubator-dgl",
        "incubator-infopro",
        "incubator-feature-kd",
        "incubator-sequential",
        "incubator-stitch",
        "incubator-template",
    ] {
        assert!(
            !defines_tensor_id_counter(&library(plugin)),
            "{plugin} carries its own dfdx"
        );
    }
}

/// `[plugins.options]` keys are checked against what the selected plugins declare, before
/// anything is written or trained; `plugins list` and `plugins check` show the options.
#[test]
fn plugin_options_are_typed_and_checked_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library("incubator-meta-kd");
    let with = |options: &str| {
        write_config(
            tmp.path(),
            &format!(
                "{}[plugins]\nstrategy = \"meta-kd\"\nlibraries = [{:?}]\n[plugins.options]\n{options}",
                without_e2e(),
                lib.display().to_string()
            ),
        )
    };
    for (options, want) in [
        (
            "alpah = 0.5\n",
            &[
                "plugins.options.alpah is not an option of the selected plugins",
                "alpha (number, >= 0 and <= 1, default 0.5)",
                "[strategy meta-kd]",
            ][..],
        ),
        (
            "alpha = \"half\"\n",
            &[
                "plugins.options.alpha = \"half\" must be a number",
                "weight of the distillation",
            ][..],
        ),
        (
            "temperature = true\n",
            &["plugins.options.temperature = true must be a number"][..],
        ),
    ] {
        let cfg = with(options);
        let run = tmp.path().join("refused");
        let out = incubator(&["run", "-c", &cfg, "-d", run.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{options}: {}", stderr(&out));
        let e = stderr(&out);
        for w in want {
            assert!(e.contains(w), "{options}: missing {w:?} in:\n{e}");
        }
        assert!(
            !run.join("stages").exists(),
            "{options}: a refused config must not start a stage"
        );
    }
    // an integer where a number is declared is fine
    let cfg = with("alpha = 1\n");
    let list = incubator(&["plugins", "list", "-c", &cfg]);
    assert_ok(&list, "plugins list");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(
            "option alpha (number, >= 0 and <= 1, default 0.5): weight of the distillation term"
        ) && text.contains("option temperature (number, > 0, default 1.0)"),
        "{text}"
    );
    let check = incubator(&["plugins", "check", lib.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("option alpha (number"));

    // config files lay over each other here as for `run`: the library comes from the second
    let base = tmp.path().join("base.toml");
    std::fs::write(&base, TINY).unwrap();
    let layer = tmp.path().join("layer.toml");
    let text = format!("[plugins]\nlibraries = [{:?}]\n", lib.display().to_string());
    std::fs::write(&layer, text).unwrap();
    let listed = |args: &[&str]| {
        let out = incubator(&[&["plugins", "list"][..], args].concat());
        assert_ok(&out, "plugins list");
        String::from_utf8_lossy(&out.stdout).contains("meta-kd")
    };
    let (base, layer) = (base.to_str().unwrap(), layer.to_str().unwrap());
    assert!(!listed(&["-c", base]));
    assert!(listed(&["-c", base, "-c", layer]));
}

/// Option values each reference plugin refuses (out of its declared range, not one of its
/// choices, or against the run's model and recipe) are refused when the run opens, before
/// the meta model or the baseline trains: not when the plugin's own stage starts.
#[test]
fn plugin_option_values_are_refused_before_any_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let stitched = "meta_design = \"thin\"\nstrategy = \"stitched\"\nassembly = \"stitched\"\n";
    let cases: &[(&str, &str, &str, &[&str])] = &[
        // the shipped feature-kd once took a negative hint weight and trained to 19.5%
        (
            "incubator-feature-kd",
            "strategy = \"feature-kd\"\n",
            "hint_weight = -0.5",
            &["plugins.options.hint_weight = -0.5 is out of range: it must be >= 0"],
        ),
        (
            "incubator-meta-kd",
            "strategy = \"meta-kd\"\n",
            "alpha = 1.5",
            &["plugins.options.alpha = 1.5 is out of range: it must be >= 0 and <= 1"],
        ),
        (
            "incubator-meta-kd",
            "strategy = \"meta-kd\"\n",
            "temperature = 0.0",
            &["plugins.options.temperature = 0 is out of range: it must be > 0"],
        ),
        (
            "incubator-meta-kd",
            "strategy = \"meta-kd\"\n",
            "alpha = nan",
            &["plugins.options.alpha = NaN is not a finite number"],
        ),
        (
            "incubator-m2mkd",
            "strategy = \"m2mkd\"\n",
            "alpha = -1",
            &["plugins.options.alpha = -1 is out of range"],
        ),
        (
            "incubator-dgl",
            "strategy = \"dgl\"\n",
            "aux_head = \"mlp\"",
            &["plugins.options.aux_head = \"mlp\" is not one of \"mlp-sr\", \"linear\""],
        ),
        (
            "incubator-dgl",
            "strategy = \"dgl\"\n",
            "aux_hidden = 9",
            &["plugins.options.aux_hidden = 9 is out of range: it must be >= 0 and <= 8"],
        ),
        (
            "incubator-dgl",
            "strategy = \"dgl\"\n",
            "aux_hidden = -1",
            &["plugins.options.aux_hidden = -1 is out of range"],
        ),
        (
            "incubator-infopro",
            "strategy = \"infopro\"\n",
            "local_loss = \"ce\"",
            &["is not one of \"contrast\", \"cross-entropy\""],
        ),
        (
            "incubator-infopro",
            "strategy = \"infopro\"\n",
            "feature_dim = 0",
            &["plugins.options.feature_dim = 0 is out of range: it must be >= 1 and <= 65536"],
        ),
        (
            "incubator-infopro",
            "strategy = \"infopro\"\n",
            "recon_last = -0.1",
            &["plugins.options.recon_last = -0.1 is out of range"],
        ),
        (
            "incubator-infopro",
            "strategy = \"infopro\"\n",
            "temperature = inf",
            &["is not a finite number"],
        ),
        // checks against the run: the model's head size, the recipe's epochs
        (
            "incubator-stitch",
            stitched,
            "meta_width = 12",
            &[
                "refuses the run's options",
                "plugins.options.meta_width: 12 must be a positive multiple of the head size",
            ],
        ),
        (
            "incubator-stitch",
            stitched,
            "module_frozen_epochs = 99",
            &[
                "strategy stitched refuses the run's options",
                "plugins.options.module_frozen_epochs: 99 must be from 0 to incubate.epochs - 1",
            ],
        ),
    ];
    for (i, (krate, select, option, want)) in cases.iter().enumerate() {
        let cfg = write_config(
            tmp.path(),
            &format!(
                "{}[plugins]\n{select}libraries = [{:?}]\n[plugins.options]\n{option}\n",
                TINY,
                library(krate).display().to_string()
            ),
        );
        let run = tmp.path().join(format!("refused-{i}"));
        let out = incubator(&["run", "-c", &cfg, "-d", run.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{option}: {}", stderr(&out));
        let e = stderr(&out);
        for w in *want {
            assert!(e.contains(w), "{option}: missing {w:?} in:\n{e}");
        }
        assert!(
            !run.join("stages").exists() && !run.join("config.toml").exists(),
            "{option}: a refused config must leave nothing behind"
        );
    }
}

/// A strategy whose modules wait for each other in a ring (module i after module i + 1).
struct Ring;

impl incubator_core::sdk::IncubationStrategy for Ring {
    fn name(&self) -> &str {
        "ring"
    }
    fn depends_on(&self, ctx: &incubator_core::sdk::PluginContext, i: usize) -> Vec<usize> {
        vec![(i + 1) % ctx.split.k()]
    }
    fn hybrid(
        &self,
        _: &incubator_core::sdk::PluginContext,
        _: incubator_core::sdk::HybridInputs,
    ) -> Result<incubator_core::sdk::Hybrid, incubator_core::sdk::PluginError> {
        unreachable!("a run of this strategy is refused when it opens")
    }
}

#[test]
fn a_strategy_whose_modules_wait_in_a_ring_is_refused_before_anything_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!("{TINY}[plugins]\nstrategy = \"ring\"\n");
    let cfg = incubator_core::config::RunConfig::from_toml(&text, "ring").unwrap();
    let run = tmp.path().join("run");
    let builtins = |r: &mut incubator_core::sdk::Registrar| {
        incubator_deep_incubation::register(r);
        r.add_strategy(std::sync::Arc::new(Ring));
    };
    let sources = incubator_core::stages::PluginSources {
        builtins: &builtins,
        extra: vec![],
    };
    let opened = incubator_core::stages::OpenRun::open(
        &run,
        Some(&cfg),
        incubator_core::run_dir::OpenMode::Start,
        &sources,
    );
    let e = format!("{:#}", opened.err().expect("a ring cannot be planned"));
    assert!(
        e.contains("incubation strategy \"ring\" cannot order the modules")
            && e.contains("modules [0, 1, 2, 3] depend on each other in a ring"),
        "{e}"
    );
    assert!(!run.exists(), "nothing is recorded for a refused run");
}

#[test]
fn a_failed_incubation_stops_what_needs_it_and_the_rest_of_the_run_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library("incubator-test-plugin-panicking");
    let text = format!(
        "{TINY}[plugins]\nstrategy = \"panicking\"\nlibraries = [{:?}]\n[plugins.options]\nfail_module = 1\n",
        lib.display().to_string()
    );
    let cfg = write_config(tmp.path(), &text);
    let run = tmp.path().join("run");
    for jobs in ["1", "2"] {
        let dir = run.join(jobs);
        let out = incubator(&[
            "run",
            "--jobs",
            jobs,
            "-c",
            &cfg,
            "-d",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let e = stderr(&out);
        assert!(
            e.contains("stage incubate-1 failed")
                && e.contains("not started, because a stage they need failed: assemble"),
            "--jobs {jobs}: {e}"
        );
        let finished = |slug: &str| dir.join(format!("stages/{slug}/summary.json")).exists();
        assert!(!finished("incubate-1") && !finished("assemble"));
        assert!(
            ["meta", "incubate-0", "incubate-2", "incubate-3", "e2e"]
                .iter()
                .all(|s| finished(s)),
            "--jobs {jobs}: the stages that do not need module 1 finished"
        );
        assert!(
            !dir.join("events/assemble.jsonl").exists(),
            "assembly never started"
        );
    }
}
