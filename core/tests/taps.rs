//! Taps and extra networks: a tap hands the loss exactly the activation the next part
//! receives; training updates the unit and the trained extras only (frozen extras, such as
//! teachers, stay bit-identical); every pass through an extra is in the stage's compute; each
//! loss term is logged under its name.

use incubator_core::config::{RunConfig, StageRecipe};
use incubator_core::device::new_device;
use incubator_core::events::StageId;
use incubator_core::model::aux_heads::AuxClassifier;
use incubator_core::model::{flops, Extras, HasParams, Init, Mode, Named, Network, Role};
use incubator_core::telemetry::EventLog;
use incubator_core::train::loss::{kl_distillation, mse, LossInputs, LossTerms};
use incubator_core::train::{self, TrainJob};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod support;
use support::{cfg, patches, tiny_data};

/// Training module 1 of a three-part hybrid (parts before it untraced), without state files.
fn module_1_job<'a>(
    run: &'a RunConfig,
    vit: &'a incubator_core::model::VitConfig,
    data: &'a incubator_core::data::Data,
    epochs: usize,
    trainable: std::collections::BTreeSet<String>,
    loss: &'a train::trainer::LossFn<'a>,
) -> TrainJob<'a> {
    TrainJob {
        stage: StageId::incubate(1),
        cfg: run,
        vit,
        recipe: StageRecipe::new(epochs, 0.0, 0.0),
        data,
        first_traced: 1,
        trainable,
        taps: Vec::new(),
        loss,
        settings: None,
        state_path: None,
        needs: Vec::new(),
    }
}

#[test]
fn a_tap_sees_exactly_what_the_next_part_receives() {
    let dev = new_device(0);
    let c = cfg();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let net = Network::vit(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &c,
        &[2, 1, 3],
    );
    let x = patches(&dev, &c);
    // Positions before, at and after the first traced part, one asked twice, out of order.
    let taps = [3, 0, 1, 2, 1];
    for first in [0, 1, 2] {
        let (logits, seen) = net.forward_tapped(x.clone(), first, 0.0, &mut Mode::eval(), &taps);
        let mut inputs = vec![x.clone()];
        let rates = net.drop_path_rates(0.0);
        let mut j = 0;
        for part in &net.parts {
            let next = part.forward_plain(
                inputs.last().unwrap().clone(),
                &rates[j..j + part.depth()],
                &mut Mode::eval(),
            );
            j += part.depth();
            inputs.push(next);
        }
        for (k, &p) in taps.iter().enumerate() {
            assert_eq!(
                seen[k].as_vec(),
                inputs[p].as_vec(),
                "tap at position {p} (first traced part {first})"
            );
        }
        assert_eq!(
            logits.as_vec(),
            inputs[3].as_vec(),
            "the last tap is the logits' token"
        );
    }
}

/// One incubation step setup: meta-like hybrid of three one-block modules, module 1 trained,
/// a trained auxiliary classifier on module 1's output and a frozen teacher (a whole network).
#[test]
fn training_updates_the_unit_and_trained_extras_only_and_counts_every_extra_pass() {
    let dev = new_device(0);
    let c = cfg();
    let data = tiny_data(&c);
    let mut run = RunConfig::default();
    run.optim.batch_size = 16;
    run.optim.base_lr = 0.05;
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let mut init = Init {
        dev: &dev,
        rng: &mut rng,
    };
    let mut hybrid = Network::vit(&mut init, &c, &[1, 1, 1]);
    let teacher = Network::vit(&mut init, &c, &[2, 2, 2]);
    let head = AuxClassifier::new(&mut init, c.embed_dim, c.num_classes, 1, c.norm_eps);
    let aux = Network {
        parts: vec![Box::new(Named::new("head", head))],
    };
    let mut extras = Extras::none();
    extras.add("aux", aux, Role::Trained).unwrap();
    extras.add("teacher", teacher, Role::Frozen).unwrap();
    assert!(extras
        .add("aux", Network { parts: vec![] }, Role::Frozen)
        .is_err());
    assert!(extras
        .add("a.b", Network { parts: vec![] }, Role::Frozen)
        .is_err());

    let snapshot = |m: &dyn HasParams| -> Vec<(String, Vec<f32>)> {
        m.named_params()
            .into_iter()
            .map(|(n, p)| (n, p.to_vec()))
            .collect()
    };
    let (net_before, extras_before) = (snapshot(&hybrid), snapshot(&extras));
    let mut trainable: std::collections::BTreeSet<String> =
        hybrid.param_names_of(1..2).into_iter().collect();
    trainable.extend(extras.trained_param_names());
    assert!(extras
        .trained_param_names()
        .iter()
        .all(|n| n.starts_with("aux.aux.head.")));

    let loss = |x: LossInputs| {
        let aux_logits = incubator_core::model::network::logits(x.extras.run("aux", x.tap(0)));
        let teacher = x.extras.predict("teacher", x.batch.patches.clone());
        LossTerms::new()
            .with("task", 0.5, x.task())
            .with(
                "aux_ce",
                0.3,
                incubator_core::train::loss::soft_cross_entropy(
                    aux_logits,
                    x.batch.targets.clone(),
                ),
            )
            .with("kd", 0.2, kl_distillation(x.logits(), teacher, 1.0))
            // weight 0: logged, no effect on training
            .with("hint", 0.0, mse(x.tap(0), x.tap_plain(0) * 0.5))
    };
    let dir = tempfile::tempdir().unwrap();
    let stage = StageId::incubate(1);
    let epochs = 2;
    let mut job = module_1_job(&run, &c, &data, epochs, trainable.clone(), &loss);
    job.taps = vec![2];
    let mut log = EventLog::open(dir.path(), stage).unwrap();
    let outcome = train::train(
        job,
        &mut hybrid,
        &mut extras,
        &dev,
        &mut incubator_core::train::observe::Observers::log_only(&mut log),
    )
    .unwrap();
    log.flush();

    let (net_after, extras_after) = (snapshot(&hybrid), snapshot(&extras));
    for ((name, b), (_, a)) in net_before.iter().zip(&net_after) {
        if trainable.contains(name) {
            assert_ne!(a, b, "{name} was not trained");
        } else {
            assert_eq!(a, b, "frozen {name} changed");
        }
    }
    for ((name, b), (_, a)) in extras_before.iter().zip(&extras_after) {
        if name.starts_with("aux.teacher.") {
            assert_eq!(a, b, "the teacher's {name} changed");
        } else {
            assert_ne!(a, b, "the trained extra's {name} did not change");
        }
    }

    // Compute: the hybrid's own count plus, per sample and step, the auxiliary head forward
    // and backward (3x) on module 1's output and the teacher's forward (1x) on the patches.
    let probe = patches(&dev, &c);
    let per_sample = flops::train_flops_per_sample(&hybrid, &probe, 1)
        + 3.0 * extras.get("aux").unwrap().flops_on(c.tokens(), c.embed_dim)
        + extras
            .get("teacher")
            .unwrap()
            .flops_on(c.num_patches(), c.patch_dim());
    let steps = (data.train().len() / 16 * epochs) as f64;
    let want = per_sample * 16.0 * steps / 1e9;
    assert!(
        (outcome.train_gflop - want).abs() <= 1e-9 * want,
        "counted {} GFLOP, the passes cost {want}",
        outcome.train_gflop
    );
    let teacher_share = extras
        .get("teacher")
        .unwrap()
        .flops_on(c.num_patches(), c.patch_dim());
    assert!(teacher_share > 0.0);

    // Every term under its name, in every step's event.
    let text = std::fs::read_to_string(dir.path().join("events").join("incubate-1.jsonl")).unwrap();
    let steps_logged: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "train_step")
        .collect();
    assert_eq!(steps_logged.len() as f64, steps);
    for v in &steps_logged {
        let terms = v["terms"].as_object().expect("terms in every step");
        let names: Vec<&str> = terms.keys().map(String::as_str).collect();
        assert_eq!(names, ["aux_ce", "hint", "kd", "task"]);
        // The step's loss is the weighted sum of its terms.
        let t = |k: &str| terms[k].as_f64().unwrap();
        let sum = 0.5 * t("task") + 0.3 * t("aux_ce") + 0.2 * t("kd");
        assert!((v["loss"].as_f64().unwrap() - sum).abs() < 1e-4, "{v}");
        assert!(t("hint") > 0.0);
    }
}

#[test]
fn a_loss_is_refused_with_its_fault() {
    use incubator_core::train::loss::TermsError;
    for (terms, want, text) in [
        (LossTerms::new(), TermsError::None, "no terms"),
        (
            LossTerms::new().with("a b", 1.0, zero()),
            TermsError::BadName("a b".into()),
            "\"a b\"",
        ),
        (
            LossTerms::new()
                .with("x", 1.0, zero())
                .with("x", 1.0, zero()),
            TermsError::Repeated("x".into()),
            "two loss terms are named \"x\"",
        ),
    ] {
        let e = terms.total(Default::default()).err().unwrap();
        assert!(e.to_string().contains(text), "{e}");
        assert_eq!(e, want);
    }
}

fn zero() -> incubator_core::train::loss::Loss {
    use dfdx::prelude::*;
    let dev = new_device(0);
    let z: Tensor<Rank0, f32, _> = dev.zeros();
    z.leaky_traced()
}

/// Per-step optimizer settings: a part frozen while `epoch < 1` is bit-identical after one
/// epoch and trains in the second; the rest trains throughout.
#[test]
fn a_part_frozen_for_an_epoch_starts_training_after_it() {
    use incubator_core::train::optimizer::{ParamSettings, Settings};
    let dev = new_device(0);
    let c = cfg();
    let data = tiny_data(&c);
    let mut run = RunConfig::default();
    run.optim.batch_size = 16;
    let build = || {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        Network::vit(
            &mut Init {
                dev: &dev,
                rng: &mut rng,
            },
            &c,
            &[1, 1, 1],
        )
    };
    let start: Vec<Vec<f32>> = build()
        .named_params()
        .iter()
        .map(|(_, p)| p.to_vec())
        .collect();
    let net0 = build();
    let (part1, part2): (Vec<String>, Vec<String>) =
        (net0.param_names_of(1..2), net0.param_names_of(2..3));
    let trainable: std::collections::BTreeSet<String> =
        part1.iter().chain(&part2).cloned().collect();
    let settings = |p: &incubator_core::train::loss::Progress| -> Result<Settings, incubator_core::train::job::SettingsError> {
        Ok(part1
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    ParamSettings {
                        frozen: p.epoch < 1,
                        ..Default::default()
                    },
                )
            })
            .collect())
    };
    for epochs in [1, 2] {
        let mut net = build();
        let mut job = module_1_job(
            &run,
            &c,
            &data,
            epochs,
            trainable.clone(),
            &train::trainer::task_loss,
        );
        job.settings = Some(&settings);
        train::train(
            job,
            &mut net,
            &mut Extras::none(),
            &dev,
            &mut incubator_core::train::observe::Observers::none(),
        )
        .unwrap();
        for ((name, p), before) in net.named_params().iter().zip(&start) {
            let moved = p.to_vec() != *before;
            let want = if part1.contains(name) {
                epochs > 1
            } else {
                part2.contains(name)
            };
            assert_eq!(moved, want, "{name} after {epochs} epoch(s)");
        }
    }
}
