//! No configuration panics. Generated configs change one to three keys of a small run to
//! values valid and invalid for each key (wrong types, zero, negative, NaN, infinity, out of
//! range, unknown names); each config either trains the whole pipeline or is refused with a
//! message that names one of the keys it changed. Never a panic, never a "panicked" error.
//!
//! Valid values are kept small (a few epochs, tiny widths, at most 64 training images), so
//! every accepted config really runs; sizes that are valid but slow (all 6000 images, wide
//! models) are left out for time, not because they are refused.

use incubator_core::config::RunConfig;
use incubator_core::plugin::Registrar;
use incubator_core::stages::{pipeline, Engine, PluginSources};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// The run every case starts from: 4 steps per stage, 2 modules.
const BASE: &str = "seed = 1
[model]
embed_dim = 16
depth = 2
num_heads = 2
[split]
divided_depths = [1, 1]
[data]
train_limit = 32
test_limit = 16
[optim]
batch_size = 8
[meta]
epochs = 1
[incubate]
epochs = 1
[finetune]
epochs = 1
[e2e]
epochs = 1
";

/// Every key of the config, with values to try (TOML literals).
const KEYS: &[(&str, &[&str])] = &[
    ("seed", &["0", "7", "-1", "\"x\"", "1.5"]),
    (
        "model.preset",
        &["\"mnist-small\"", "\"vit-tiny\"", "\"vit-gigantic\"", "3"],
    ),
    ("model.image_size", &["28", "32", "0", "-3"]),
    ("model.channels", &["1", "3", "0"]),
    ("model.patch_size", &["7", "4", "14", "28", "5", "0"]),
    ("model.embed_dim", &["8", "12", "16", "0", "-8", "\"big\""]),
    ("model.depth", &["1", "2", "3", "0"]),
    ("model.num_heads", &["1", "2", "3", "0"]),
    (
        "model.mlp_ratio",
        &["1.0", "0.5", "0.0", "0.01", "-1.0", "nan", "inf"],
    ),
    ("model.qkv_bias", &["true", "false", "1"]),
    ("model.norm_eps", &["1e-6", "0.0", "-1.0", "nan"]),
    ("model.num_classes", &["10", "12", "2", "0", "1000"]),
    (
        "split.divided_depths",
        &[
            "[1, 1]",
            "[2]",
            "[1, 0, 1]",
            "[]",
            "[3]",
            "[-1]",
            "[1, 1, 1]",
        ],
    ),
    (
        "data.dataset",
        &["\"embedded-mnist\"", "\"cifar10\"", "\"imagenet\"", "7"],
    ),
    ("data.path", &["\"/nonexistent\"", "3"]),
    ("data.cache_dir", &["\"/nonexistent-cache\"", "[]"]),
    ("data.train_limit", &["64", "16", "8", "5", "1", "-1"]),
    ("data.test_limit", &["32", "1", "0", "-2"]),
    ("augment.crop_padding", &["0", "2", "40", "5000", "-1"]),
    ("augment.hflip", &["true", "false", "\"yes\""]),
    (
        "augment.label_smoothing",
        &["0.0", "0.1", "0.99", "1.0", "-0.1", "nan"],
    ),
    (
        "augment.mixup_alpha",
        &["0.0", "0.8", "1e-9", "-1.0", "inf"],
    ),
    ("augment.cutmix_alpha", &["0.0", "1.0", "-2.0", "nan"]),
    ("augment.mix_prob", &["0.0", "1.0", "0.5", "1.5", "-0.1"]),
    ("augment.switch_prob", &["0.5", "0.0", "1.0", "2.0"]),
    ("augment.repeated_augment", &["1", "3", "0", "-2"]),
    (
        "augment.rand_augment",
        &[
            "\"\"",
            "\"rand-m9-mstd0.5-inc1\"",
            "\"rand-m12\"",
            "\"autoaug\"",
            "3",
        ],
    ),
    ("augment.reprob", &["0.0", "0.25", "1.5", "nan"]),
    (
        "augment.rand_augment_in_memory",
        &["true", "false", "\"yes\""],
    ),
    (
        "augment.rrc_scale",
        &["[0.08, 1.0]", "[0.5, 0.2]", "[0.0, 1.0]", "[1.0]"],
    ),
    (
        "augment.rrc_ratio",
        &["[0.75, 1.33]", "[2.0, 1.0]", "[-1.0, 1.0]"],
    ),
    ("augment.crop_pct", &["0.875", "1.0", "0.0", "1.5"]),
    ("data.image_size", &["224", "32", "0"]),
    ("data.workers", &["0", "2", "-1"]),
    ("data.prefetch", &["1", "2", "0"]),
    ("optim.batch_size", &["8", "16", "1", "0", "100000", "-4"]),
    ("optim.accum_steps", &["1", "2", "0", "3"]),
    (
        "optim.base_lr",
        &["0.01", "1e-4", "0.0", "-1.0", "nan", "1e30"],
    ),
    ("optim.min_lr", &["0.0", "1e-5", "-1.0"]),
    ("optim.warmup_lr", &["1e-6", "-1e-6", "inf"]),
    ("optim.weight_decay", &["0.0", "0.05", "-0.1", "nan"]),
    (
        "optim.betas",
        &[
            "[0.9, 0.999]",
            "[0.0, 0.0]",
            "[1.0, 0.9]",
            "[0.9]",
            "[0.9, 0.999, 0.5]",
        ],
    ),
    ("optim.eps", &["1e-8", "0.0", "-1e-8"]),
    ("optim.clip_grad", &["1.0", "0.0", "-1.0", "inf", "\"off\""]),
    ("meta.epochs", &["1", "2", "0", "-1"]),
    ("meta.warmup_epochs", &["0", "1", "5", "0.5", "-0.5", "nan"]),
    ("meta.steps", &["0", "3", "5", "-1", "1.5"]),
    (
        "meta.drop_path",
        &["0.0", "0.5", "0.99", "1.0", "1.5", "-0.1", "nan"],
    ),
    ("incubate.epochs", &["1", "2", "0"]),
    ("incubate.warmup_epochs", &["0", "1", "3"]),
    ("incubate.drop_path", &["0.0", "0.3", "1.0", "nan"]),
    ("finetune.epochs", &["1", "2", "0"]),
    ("finetune.warmup_epochs", &["0", "1", "9", "0.75"]),
    ("finetune.steps", &["2", "9"]),
    ("finetune.drop_path", &["0.0", "0.2", "2.0"]),
    ("e2e.enabled", &["true", "false", "\"no\""]),
    ("e2e.epochs", &["1", "2", "0", "-1"]),
    ("e2e.warmup_epochs", &["0", "1", "4", "0.25", "inf"]),
    ("e2e.steps", &["0", "1", "6", "-2"]),
    ("e2e.drop_path", &["0.0", "0.1", "1.5", "-1.0", "inf"]),
    (
        "plugins.meta_design",
        &["\"deep-incubation\"", "\"nope\"", "\"\""],
    ),
    (
        "plugins.strategy",
        &["\"deep-incubation\"", "\"nope\"", "1"],
    ),
    ("plugins.assembly", &["\"deep-incubation\"", "\"nope\""]),
    (
        "plugins.libraries",
        &["[]", "[\"/nonexistent/libx.so\"]", "[\"/tmp\"]", "\"x\""],
    ),
    ("plugins.builtins", &["true", "false"]),
    ("plugins.options", &["{ alpha = 0.5 }", "3"]),
    ("checkpoint.every_steps", &["0", "1", "3", "-1"]),
    ("slurm.binary", &["\"/opt/incubator\"", "5"]),
    ("slurm.default.time", &["\"1:00:00\"", "\"soon\""]),
    ("slurm.incubate.mem", &["\"16G\"", "\"lots\""]),
    ("slurm.meta.cpus", &["4", "0", "-1"]),
    ("slurm.assemble.partition", &["\"gpu\"", "\"two words\""]),
    ("slurm.e2e.extra", &["[\"--qos=high\"]", "[\"qos\"]"]),
    ("optim.batch_sise", &["3"]),
    ("colour", &["\"blue\""]),
];

fn builtins(r: &mut Registrar) {
    incubator_deep_incubation::register(r);
}

/// The base config with `changes` applied, as TOML text.
fn config_text(changes: &[(&str, &str)]) -> String {
    let mut table: toml::Table = toml::from_str(BASE).unwrap();
    for (key, literal) in changes {
        let value: toml::Table = toml::from_str(&format!("v = {literal}")).unwrap();
        let value = value["v"].clone();
        let mut at = &mut table;
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap();
        for p in parts {
            at = at
                .entry(p)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .unwrap();
        }
        at.insert(last.to_string(), value);
    }
    toml::to_string(&table).unwrap()
}

/// Runs the config as `incubator run` would; the error text if refused.
fn outcome(text: &str, dir: &std::path::Path) -> Result<(), String> {
    let cfg = RunConfig::from_toml(text, "generated.toml").map_err(|e| e.to_string())?;
    let sources = PluginSources {
        builtins: &builtins,
        extra: Vec::new(),
    };
    let mut engine = Engine::open(
        &dir.join("run"),
        Some(&cfg),
        incubator_core::run_dir::OpenMode::Start,
        &sources,
    )
    .map_err(|e| format!("{e:#}"))?;
    engine.show_progress = false;
    pipeline::run(&engine, 1).map_err(|e| format!("{e:#}"))?;
    Ok(())
}

#[test]
fn every_generated_config_runs_or_is_refused_naming_a_key_it_changed() {
    let cases: u32 = std::env::var("INCUBATOR_CONFIG_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let change = (0..KEYS.len(), any::<prop::sample::Index>())
        .prop_map(|(k, v)| (KEYS[k].0, v.get(KEYS[k].1)));
    let (ran, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&prop::collection::vec(change, 1..=3), |changes| {
            let changes: Vec<(&str, &str)> = changes.iter().map(|(k, v)| (*k, **v)).collect();
            let text = config_text(&changes);
            let dir = tempfile::tempdir().unwrap();
            let result = std::panic::catch_unwind(|| outcome(&text, dir.path()));
            let result =
                result.map_err(|_| TestCaseError::fail(format!("panicked on {changes:?}")))?;
            match result {
                Ok(()) => ran.set(ran.get() + 1),
                Err(message) => {
                    refused.set(refused.get() + 1);
                    prop_assert!(
                        !message.contains("panicked"),
                        "a panic became the error for {changes:?}: {message}"
                    );
                    prop_assert!(
                        changes.iter().any(|(key, _)| names(&message, key)),
                        "refused {changes:?} without naming the key: {message}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("{} configs trained, {} refused", ran.get(), refused.get());
    assert!(
        ran.get() > 0 && refused.get() > 0,
        "both kinds were generated"
    );
}

/// Whether `message` names `key` by its path.
fn names(message: &str, key: &str) -> bool {
    message.contains(key)
}
