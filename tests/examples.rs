//! Every configuration in examples/ loads and validates, and the plugins it names, with its
//! options, are accepted by the registry its libraries make (this build's libraries stand in
//! for the release paths the examples give).

mod common;
use common::*;
use incubator_core::config::RunConfig;
use incubator_core::plugin::Registry;

#[test]
fn every_example_config_is_valid_with_its_plugins_and_options() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        if std::fs::read_to_string(&path)
            .unwrap()
            .contains("\n[sweep]\n")
        {
            // a sweep: every configuration of its grid, for every seed, is a valid config
            let spec = incubator::sweep::spec::SweepSpec::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for (point, set) in spec.points() {
                for &seed in &spec.seeds {
                    let cfg = spec
                        .config(&set, seed)
                        .unwrap_or_else(|e| panic!("{} {}: {e}", path.display(), point.name));
                    cfg.validate()
                        .unwrap_or_else(|e| panic!("{} {}: {e}", path.display(), point.name));
                }
            }
            checked += 1;
            continue;
        }
        let mut cfg = RunConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        cfg.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        cfg.plugins.libraries = cfg
            .plugins
            .libraries
            .iter()
            .map(|lib| {
                let file = lib.file_name().unwrap().to_str().unwrap();
                let krate = file
                    .trim_start_matches("lib")
                    .trim_end_matches(".so")
                    .replace('_', "-");
                assert!(
                    lib.to_str().unwrap().contains("target/release/"),
                    "{}: {lib:?}",
                    path.display()
                );
                library(&krate)
            })
            .collect();
        let (registry, _) =
            Registry::for_run(&cfg.plugins, &incubator_deep_incubation::register, &[])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        registry
            .check_selection(&cfg.plugins)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 10, "{checked} examples");
}

/// Config files lay over each other (`-c recipe.toml -c plugin.toml`): the paper's CIFAR
/// comparison is the recipe with each method's plugin file on top, and a run directory keeps
/// the merged configuration.
#[test]
fn config_files_lay_over_each_other() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (overlay, strategy) in [("dgl", "dgl"), ("infopro", "infopro"), ("m2mkd", "m2mkd")] {
        let cfg = RunConfig::load_layers(&[
            examples.join("deit-recipe.toml"),
            examples.join(format!("{overlay}.toml")),
        ])
        .unwrap();
        assert_eq!(cfg.plugins.strategy, strategy);
        assert_eq!(
            cfg.data.dataset.to_string(),
            "cifar100",
            "the recipe's data stay"
        );
        assert_eq!(cfg.optim.accum_steps, 16, "the recipe's optimizer stays");
        let lib = &cfg.plugins.libraries[0];
        assert!(
            lib.is_absolute()
                && lib.ends_with(format!("target/release/libincubator_{strategy}.so")),
            "relative to the file that names it: {lib:?}"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let base = write_config(tmp.path(), &with_keys(TINY, &[("e2e.enabled", "false")]));
    let over = tmp.path().join("over.toml");
    std::fs::write(
        &over,
        "seed = 7\n[incubate]\nepochs = 1\n[data]\ntrain_limit = 256\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    assert_ok(
        &incubator(&[
            "run",
            "-c",
            &base,
            "-c",
            over.to_str().unwrap(),
            "-d",
            run.to_str().unwrap(),
        ]),
        "run with two config files",
    );
    let stored = RunConfig::load(&run.join("config.toml")).unwrap();
    assert_eq!(
        (stored.seed, stored.incubate.epochs, stored.data.train_limit),
        (7, 1, 256)
    );
    assert_eq!(
        stored.model.embed_dim,
        Some(32),
        "the base file's model stays"
    );
    // a bad key in a later file is reported with both files
    std::fs::write(&over, "[optim]\nbatch_sise = 8\n").unwrap();
    let out = incubator(&[
        "run",
        "-c",
        &base,
        "-c",
        over.to_str().unwrap(),
        "-d",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    let e = stderr(&out);
    assert!(
        e.contains("optim.batch_sise") && e.contains("over.toml"),
        "{e}"
    );
}

/// The paper's CIFAR models and the reference's exact loop, as overlays of the recipe.
#[test]
fn the_recipe_overlays_give_the_papers_models_and_the_reference_loop() {
    use incubator_core::config::ScheduleForm;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let recipe = RunConfig::load(&examples.join("deit-recipe.toml")).unwrap();
    assert_eq!(recipe.model.depth, Some(32), "DeiT-T-32");
    assert_eq!(recipe.split.divided_depths, [8, 8, 8, 8]);
    assert!(
        recipe.augment.rand_augment_in_memory
            && recipe.augment.rand_augment == "rand-m9-mstd0.5-inc1"
            && recipe.augment.reprob == 0.25,
        "DeiT's CIFAR pipeline: RandAugment m9 and random erasing 0.25 after crop and flip"
    );
    assert_eq!(
        recipe.e2e.warmup_epochs, 20.0,
        "the reference's warmup for the E2E phase (main.py's default)"
    );
    assert_eq!(
        recipe.data.normalize,
        incubator_core::config::Normalization::Imagenet,
        "DeiT's code normalises CIFAR with ImageNet's statistics"
    );
    let stages = |c: &RunConfig| [c.meta, c.incubate, c.finetune, c.e2e.recipe()];
    for s in stages(&recipe) {
        assert_eq!(s.clip_grad(&recipe.optim), Some(1.0));
        assert_eq!(s.schedule(&recipe.optim), ScheduleForm::PerStep);
    }
    let deep = RunConfig::load_layers(&[
        examples.join("deit-recipe.toml"),
        examples.join("deit-t-128.toml"),
    ])
    .unwrap();
    assert_eq!(deep.model.depth, Some(128));
    assert_eq!(deep.split.divided_depths, [32, 32, 32, 32]);
    let exact = RunConfig::load_layers(&[
        examples.join("deit-recipe.toml"),
        examples.join("reference-exact.toml"),
    ])
    .unwrap();
    exact.validate().unwrap();
    for s in stages(&exact) {
        assert_eq!(
            s.clip_grad(&exact.optim),
            None,
            "the reference never clips by default"
        );
        assert_eq!(s.schedule(&exact.optim), ScheduleForm::Deit);
    }
    // the incubation decays module 0's embeddings, as the reference's optimizer does
    assert!(exact.optim.incubation_decays_embeddings);
    // everything else is the recipe's
    let mut back = exact.clone();
    back.optim.schedule = ScheduleForm::PerStep;
    back.optim.incubation_decays_embeddings = false;
    for s in [&mut back.meta, &mut back.incubate, &mut back.finetune] {
        s.clip_grad = None;
    }
    back.e2e.clip_grad = None;
    assert_eq!(back, recipe);
}

#[test]
fn the_imagenet_examples_give_the_papers_vit_l_and_vit_h_and_the_392_px_fine_tune() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let layers = |names: &[&str]| {
        let cfg =
            RunConfig::load_layers(&names.iter().map(|n| examples.join(n)).collect::<Vec<_>>())
                .unwrap();
        cfg.validate().unwrap();
        cfg
    };
    // ImageNet: 1000 classes of RGB images at data.image_size
    let shape = |c: &RunConfig| c.vit(c.data.image_size, 3, 1000).unwrap();
    let l = layers(&["imagenet-vit-l.toml"]);
    let v = shape(&l);
    assert_eq!(
        (
            v.embed_dim,
            v.depth,
            v.num_heads,
            v.patch_size,
            v.num_patches()
        ),
        (1024, 24, 16, 16, 196)
    );
    assert_eq!(l.optim.batch_size * l.optim.accum_steps, 2048);
    let h = layers(&["imagenet-vit-l.toml", "imagenet-vit-h.toml"]);
    let v = shape(&h);
    assert_eq!(
        (v.embed_dim, v.depth, v.patch_size, v.qkv_bias, v.norm_eps),
        (1280, 32, 14, false, 1e-5)
    );
    assert_eq!(h.split.divided_depths, [8, 8, 8, 8]);
    assert_eq!(h.finetune.drop_path, 0.6);
    let hires = layers(&[
        "imagenet-vit-l.toml",
        "imagenet-vit-h.toml",
        "hires-392.toml",
    ]);
    let v = shape(&hires);
    assert_eq!((v.image_size, v.num_patches()), (392, 28 * 28));
}
