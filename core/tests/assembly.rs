//! Splitting, assembling and checkpointing keep the function exactly; incubation changes only
//! the target module.

use incubator_core::checkpoint;
use incubator_core::config::RunConfig;
use incubator_core::device::{new_device, Dev};
use incubator_core::events::StageId;
use incubator_core::model::{HasParams, Init, Mode, Module, Network, VitConfig};
use incubator_core::train::{self, TrainJob};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod support;
use support::{cfg, patches, tiny_data};

fn target(dev: &Dev, seed: u64) -> Network {
    Network::from_parts(modules(dev, seed))
}

fn modules(dev: &Dev, seed: u64) -> Vec<Module> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut init = Init { dev, rng: &mut rng };
    [2, 1, 3]
        .iter()
        .enumerate()
        .map(|(i, &d)| Module::new(&mut init, &cfg(), i, 3, d))
        .collect()
}

#[test]
fn assembled_model_equals_modules_run_in_sequence() {
    let dev = new_device(0);
    let c = cfg();
    let parts = modules(&dev, 1);
    assert!(parts[0].stem.is_some() && parts[1].stem.is_none());
    assert!(parts[2].head.is_some() && parts[0].head.is_none());
    let x = patches(&dev, &c);
    let mut h = x.clone();
    for m in &parts {
        h = m.forward(h, &vec![0.0; m.blocks.len()], &mut Mode::eval());
    }
    let seq = h.as_vec();

    let net = Network::from_parts(parts);
    let whole = net.forward(x, 0.0, &mut Mode::eval()).as_vec();
    assert_eq!(whole, seq, "bit-identical logits");
    assert_eq!(net.depths(), vec![2, 1, 3]);
}

#[test]
fn modules_saved_separately_and_stacked_give_identical_logits() {
    let dev = new_device(0);
    let c = cfg();
    let parts = modules(&dev, 2);
    let x = patches(&dev, &c);
    let dir = tempfile::tempdir().unwrap();
    for (i, m) in parts.iter().enumerate() {
        // module-local names: a module's first block is blocks.0 wherever it sits
        let names: Vec<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().any(|n| n.starts_with("blocks.0.")));
        checkpoint::save(
            &dir.path().join(format!("m{i}.safetensors")),
            &checkpoint::params_of(m),
            &Default::default(),
        )
        .unwrap();
    }
    let want = Network::from_parts(parts)
        .forward(x.clone(), 0.0, &mut Mode::eval())
        .as_vec();
    // fresh modules with other random weights, then loaded
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut init = Init {
        dev: &dev,
        rng: &mut rng,
    };
    let modules: Vec<Module> = [2, 1, 3]
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let mut m = Module::new(&mut init, &c, i, 3, d);
            checkpoint::read(&dir.path().join(format!("m{i}.safetensors")), "")
                .unwrap()
                .load_into(&mut m, "", &dev)
                .unwrap();
            m
        })
        .collect();
    let stacked = Network::from_parts(modules);
    assert_eq!(
        stacked.forward(x.clone(), 0.0, &mut Mode::eval()).as_vec(),
        want
    );

    // global names of the stacked network count blocks across modules
    let names: Vec<String> = stacked.named_params().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"blocks.5.mlp.fc2.weight".to_string()));
    assert!(
        names.contains(&"stem.pos_embed".to_string()) && names.contains(&"head.weight".to_string())
    );

    // whole-model checkpoint round trip
    let path = dir.path().join("whole.safetensors");
    checkpoint::save(&path, &checkpoint::params_of(&stacked), &Default::default()).unwrap();
    let mut other = target(&dev, 5);
    assert_ne!(
        other.forward(x.clone(), 0.0, &mut Mode::eval()).as_vec(),
        want
    );
    checkpoint::read(&path, "")
        .unwrap()
        .load_into(&mut other, "", &dev)
        .unwrap();
    assert_eq!(other.forward(x, 0.0, &mut Mode::eval()).as_vec(), want);
}

#[test]
fn checkpoint_of_another_shape_is_refused_with_names() {
    let dev = new_device(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    checkpoint::save(
        &path,
        &checkpoint::params_of(&target(&dev, 1)),
        &Default::default(),
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut wider = Network::vit(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &VitConfig {
            embed_dim: 32,
            ..cfg()
        },
        &[2, 1, 3],
    );
    let e = checkpoint::read(&path, "")
        .unwrap()
        .load_into(&mut wider, "", &dev)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("stem.cls_token has shape [16] in the file but [32] in the model"),
        "{e}"
    );
    let mut deeper = Network::vit(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &cfg(),
        &[2, 2, 3],
    );
    let e = checkpoint::read(&path, "")
        .unwrap()
        .load_into(&mut deeper, "", &dev)
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocks.6.") && e.contains("missing"), "{e}");
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let e = checkpoint::read(&path, "").err().unwrap().to_string();
    assert!(e.contains("corrupt"), "{e}");
}

#[test]
fn incubation_changes_only_the_target_module() {
    let dev = new_device(0);
    let c = cfg();
    let data = tiny_data(&c);
    let mut run = RunConfig::default();
    run.optim.batch_size = 16;
    run.optim.base_lr = 0.05;
    for target in [0, 1, 2] {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let mut hybrid = Network::vit(
            &mut Init {
                dev: &dev,
                rng: &mut rng,
            },
            &c,
            &[1, 1, 1],
        );
        hybrid.parts[target] = Box::new(Module::new(
            &mut Init {
                dev: &dev,
                rng: &mut rng,
            },
            &c,
            target,
            3,
            2,
        ));
        let before: Vec<(String, Vec<f32>)> = hybrid
            .named_params()
            .into_iter()
            .map(|(n, p)| (n, p.to_vec()))
            .collect();
        let trainable: std::collections::BTreeSet<String> = hybrid
            .param_names_of(target..target + 1)
            .into_iter()
            .collect();
        let loss = train::trainer::task_loss;
        let job = TrainJob {
            stage: StageId::incubate(target),
            cfg: &run,
            vit: &c,
            recipe: incubator_core::config::StageRecipe::new(2, 0.0, 0.1),
            data: &data,
            first_traced: target,
            trainable: trainable.clone(),
            taps: Vec::new(),
            loss: &loss,
            settings: None,
            state_path: None,
            needs: Vec::new(),
        };
        train::train(
            job,
            &mut hybrid,
            &mut incubator_core::model::Extras::none(),
            &dev,
            &mut incubator_core::train::observe::Observers::none(),
        )
        .unwrap();
        let after: Vec<(String, Vec<f32>)> = hybrid
            .named_params()
            .into_iter()
            .map(|(n, p)| (n, p.to_vec()))
            .collect();
        let mut changed = 0;
        for ((name, b), (_, a)) in before.iter().zip(&after) {
            if trainable.contains(name) {
                changed += (a != b) as usize;
            } else {
                assert_eq!(
                    a, b,
                    "frozen parameter {name} changed while incubating module {target}"
                );
            }
        }
        assert!(
            changed * 10 >= trainable.len() * 9,
            "module {target}: only {changed} of {} trainable tensors changed",
            trainable.len()
        );
    }
}
