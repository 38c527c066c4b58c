//! `incubator export --format timm` checked by timm itself: the exported weights load into
//! timm's VisionTransformer with strict=True and its logits on the exported images agree with
//! this engine's within 1e-5 (relative), for the E2E, the assembled and the meta model.

mod common;
use common::*;

#[test]
#[ignore = "needs INCUBATOR_TORCH_PYTHON: a python with torch and timm (./scripts/test.sh sets it)"]
fn exported_models_load_into_timm_strictly_and_give_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    assert_ok(&incubator(&["run", "-c", &cfg, "-d", r]), "incubator run");
    for model in ["e2e", "assemble"] {
        assert_ok(&incubator(&["export", "-d", r, "--model", model]), "export");
        let dir = run.join(format!("export/{model}-timm"));
        let got = python_json(
            "INCUBATOR_TORCH_PYTHON",
            "timm_check.py",
            &[dir.as_os_str()],
        );
        assert_eq!(got["missing"], serde_json::json!([]), "{model}: {got}");
        assert_eq!(got["unexpected"], serde_json::json!([]), "{model}: {got}");
        assert!(got["rel_error"].as_f64().unwrap() < 1e-5, "{model}: {got}");
        assert_eq!(got["argmax_agree"], true, "{model}: {got}");
    }
    let e = stderr(&incubator(&["export", "-d", r, "--format", "onnx"]));
    assert!(
        e.contains("invalid value 'onnx' for '--format <FORMAT>'")
            && e.contains("[possible values: timm]"),
        "{e}"
    );
    // every choice on the command line is one clap knows, listed when mistyped
    for (args, choices) in [
        (
            &["import", "m.safetensors", "--as", "teacher", "-d", r][..],
            "[possible values: meta, e2e, init]",
        ),
        (
            &[
                "data",
                "folder",
                "embedded-mnist",
                "--out",
                r,
                "--format",
                "gif",
            ],
            "[possible values: png, jpeg]",
        ),
        (
            &["eval", "-d", r, "--split", "all"],
            "[possible values: test, val, train]",
        ),
    ] {
        let out = incubator(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(choices), "{args:?}: {}", stderr(&out));
    }

    // a meta model has one block per module: two modules of two blocks make a 2-block ViT
    let split = with_keys(TINY, &[("split.divided_depths", "[2, 2]")]);
    assert_ne!(split, TINY);
    let two = tmp.path().join("two");
    std::fs::create_dir(&two).unwrap();
    let cfg = write_config(&two, &split);
    let r = two.join("run");
    let r = r.to_str().unwrap();
    assert_ok(&incubator(&["meta", "-c", &cfg, "-d", r]), "incubator meta");
    assert_ok(
        &incubator(&["export", "-d", r, "--model", "meta"]),
        "export meta",
    );
    let dir = two.join("run/export/meta-timm");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["kwargs"]["depth"], 2, "{config}");
    let got = python_json(
        "INCUBATOR_TORCH_PYTHON",
        "timm_check.py",
        &[dir.as_os_str()],
    );
    assert_eq!(got["missing"], serde_json::json!([]), "meta: {got}");
    assert_eq!(got["unexpected"], serde_json::json!([]), "meta: {got}");
    assert!(got["rel_error"].as_f64().unwrap() < 1e-5, "meta: {got}");
}

#[test]
#[ignore = "needs INCUBATOR_TORCH_PYTHON: a python with torch and timm (./scripts/test.sh sets it)"]
fn timm_models_import_as_meta_and_e2e_models() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    // timm's constructor arguments for this config, as export writes them
    let a = tmp.path().join("a");
    assert_ok(
        &incubator(&["e2e", "-c", &cfg, "-d", a.to_str().unwrap()]),
        "e2e",
    );
    assert_ok(
        &incubator(&["export", "-d", a.to_str().unwrap(), "--model", "e2e"]),
        "export",
    );
    let config = a.join("export/e2e-timm/config.json");
    let timm_file = tmp.path().join("timm.safetensors");
    python_json(
        "INCUBATOR_TORCH_PYTHON",
        "timm_make.py",
        &[config.as_os_str(), timm_file.as_os_str()],
    );
    let file = timm_file.to_str().unwrap();

    // as the E2E model: our logits on the run's images are timm's, and exporting it again gives
    // back timm's tensors exactly
    let b = tmp.path().join("b");
    let bs = b.to_str().unwrap();
    let out = incubator(&["import", file, "--as", "e2e", "-c", &cfg, "-d", bs]);
    assert_ok(&out, "import --as e2e");
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported as the e2e model"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("stages/e2e/summary.json")).unwrap()).unwrap();
    assert_eq!(
        (summary["epochs"].as_u64(), summary["train_gflop"].as_f64()),
        (Some(0), Some(0.0))
    );
    let exported = b.join("again");
    assert_ok(
        &incubator(&[
            "export",
            "-d",
            bs,
            "--model",
            "e2e",
            "-o",
            exported.to_str().unwrap(),
        ]),
        "export again",
    );
    let got = python_json(
        "INCUBATOR_TORCH_PYTHON",
        "timm_check.py",
        &[exported.as_os_str()],
    );
    assert!(
        got["rel_error"].as_f64().unwrap() < 1e-5 && got["argmax_agree"] == true,
        "{got}"
    );
    let read = |p: &std::path::Path| incubator_core::checkpoint::read(p, "").unwrap().tensors;
    assert!(
        read(&timm_file) == read(&exported.join("model.safetensors")),
        "the round trip changes nothing"
    );
    // the imported model's top-1 in the summary is what eval measures
    assert_ok(&incubator(&["eval", "-d", bs, "--model", "e2e"]), "eval");
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(b.join("eval/e2e-embedded-mnist-test/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["top1"], summary["top1"]);
    let e = stderr(&incubator(&["import", file, "--as", "e2e", "-d", bs]));
    assert!(
        e.contains("has finished already") && e.contains("fresh run directory"),
        "{e}"
    );

    // as the meta model (this config's meta model has the target's shape): a module incubates in it
    let c = tmp.path().join("c");
    let cs = c.to_str().unwrap();
    assert_ok(
        &incubator(&["import", file, "--as", "meta", "-c", &cfg, "-d", cs]),
        "import --as meta",
    );
    assert_ok(
        &incubator(&["incubate", "--module", "0", "-d", cs]),
        "incubate in the imported meta model",
    );

    // a model that does not fit the run, a stage that cannot be imported
    let wide = tmp.path().join("wide.safetensors");
    python_json(
        "INCUBATOR_TORCH_PYTHON",
        "timm_make.py",
        &[config.as_os_str(), wide.as_os_str(), "48".as_ref()],
    );
    let d = tmp.path().join("d");
    let out = incubator(&[
        "import",
        wide.to_str().unwrap(),
        "--as",
        "e2e",
        "-c",
        &cfg,
        "-d",
        d.to_str().unwrap(),
    ]);
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("does not fit this run's e2e model"),
        "{e}"
    );
    assert!(
        !d.join("stages/e2e/summary.json").exists(),
        "nothing is marked finished"
    );
    let e = stderr(&incubator(&[
        "import",
        file,
        "--as",
        "assemble",
        "-d",
        d.to_str().unwrap(),
    ]));
    assert!(e.contains("[possible values: meta, e2e, init]"), "{e}");

    // as the weights the baseline starts from: at a learning rate of 1e-12 one epoch leaves
    // them as they were, so the trained baseline is timm's model
    let over = tmp.path().join("still.toml");
    std::fs::write(
        &over,
        "[optim]\nbase_lr = 1e-12\nmin_lr = 1e-13\nwarmup_lr = 1e-13\n[e2e]\nepochs = 1\nwarmup_epochs = 0\n",
    )
    .unwrap();
    let f = tmp.path().join("f");
    let fs = f.to_str().unwrap();
    let out = incubator(&[
        "import",
        file,
        "--as",
        "init",
        "-c",
        &cfg,
        "-c",
        over.to_str().unwrap(),
        "-d",
        fs,
    ]);
    assert_ok(&out, "import --as init");
    assert!(
        !f.join("stages/e2e/summary.json").exists(),
        "imported, not trained"
    );
    let trained = incubator(&["e2e", "-d", fs]);
    assert_ok(&trained, "e2e from imported weights");
    assert!(stderr(&trained).contains("starting from imported weights"));
    let again = f.join("again");
    assert_ok(
        &incubator(&[
            "export",
            "-d",
            fs,
            "--model",
            "e2e",
            "-o",
            again.to_str().unwrap(),
        ]),
        "export",
    );
    let (before, after) = (read(&timm_file), read(&again.join("model.safetensors")));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, (_, a)) in &before {
        let b = &after[name].1;
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-6,
            "{name} moved by {worst} at a learning rate of 1e-12"
        );
    }
    let e = stderr(&incubator(&["import", file, "--as", "init", "-d", fs]));
    assert!(e.contains("has started or finished already"), "{e}");
}
