//! `incubator eval` through the real binary on a run it trained: a stage's own split gives the
//! top-1 of its summary, the confusion matrix adds up (CSV and a PNG that decodes), a checkpoint
//! file works like its stage, and wrong input is refused with what to do.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn eval(run: &str, extra: &[&str]) -> std::process::Output {
    incubator(&[&["eval", "-d", run], extra].concat())
}

#[test]
fn eval_reproduces_the_stage_results_and_writes_the_confusion_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    assert_ok(&incubator(&["run", "-c", &cfg, "-d", r]), "incubator run");

    for model in ["assemble", "e2e", "meta"] {
        let out = eval(r, &["--model", model]);
        assert_ok(&out, &format!("eval {model}"));
        let dir = run.join(format!("eval/{model}-embedded-mnist-test"));
        let m = json(&dir.join("metrics.json"));
        let summary = json(&run.join(format!("stages/{model}/summary.json")));
        for key in ["top1", "top5"] {
            let (got, want) = (m[key].as_f64().unwrap(), summary[key].as_f64().unwrap());
            assert!(
                (got - want).abs() < 1e-12,
                "{model} {key}: eval {got}, training {want}"
            );
        }
        assert!(
            (m["loss"].as_f64().unwrap() - summary["test_loss"].as_f64().unwrap()).abs() < 1e-9
        );
        // the matrix: rows are labels, their sum the images, the diagonal the correct ones
        let confusion: Vec<Vec<u64>> = serde_json::from_value(m["confusion"].clone()).unwrap();
        let images = m["images"].as_u64().unwrap();
        assert_eq!(confusion.len(), 10);
        assert_eq!(confusion.iter().flatten().sum::<u64>(), images);
        let correct: u64 = (0..10).map(|i| confusion[i][i]).sum();
        assert!((correct as f64 / images as f64 - m["top1"].as_f64().unwrap()).abs() < 1e-12);
        let csv = std::fs::read_to_string(dir.join("confusion.csv")).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 11);
        assert!(rows[0].starts_with("label,predicted_0,") && rows[0].ends_with("predicted_9"));
        let first: Vec<u64> = rows[1]
            .split(',')
            .skip(1)
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(first, confusion[0]);
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(dir.join("confusion.png")).unwrap(),
        ));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        // a 48-pixel square per (label, prediction): 10 classes, 480 x 480
        assert_eq!((info.width, info.height), (480, 480));
    }

    // the train split, and the E2E model given as a file: the same numbers as its stage
    let by_stage = eval(
        r,
        &[
            "--model",
            "e2e",
            "--split",
            "train",
            "--out",
            tmp.path().join("a").to_str().unwrap(),
        ],
    );
    assert_ok(&by_stage, "eval e2e train");
    let file = run.join("stages/e2e/model.safetensors");
    let by_file = eval(
        r,
        &[
            "--model",
            file.to_str().unwrap(),
            "--split",
            "train",
            "--out",
            tmp.path().join("b").to_str().unwrap(),
        ],
    );
    assert_ok(&by_file, "eval a checkpoint file");
    let (a, b) = (
        json(&tmp.path().join("a/metrics.json")),
        json(&tmp.path().join("b/metrics.json")),
    );
    assert_eq!(a["confusion"], b["confusion"]);
    assert_eq!(a["top1"], b["top1"]);
    // the validation split: the final model's numbers there are the summary's `val`, and it
    // and the images trained on are the run's train_limit together
    for model in ["assemble", "e2e", "meta"] {
        assert_ok(&eval(r, &["--model", model, "--split", "val"]), "eval val");
        let m = json(&run.join(format!("eval/{model}-embedded-mnist-val/metrics.json")));
        let summary = json(&run.join(format!("stages/{model}/summary.json")));
        assert_eq!(summary["best_split"], "val");
        for key in ["top1", "top5", "loss"] {
            let (got, want) = (
                m[key].as_f64().unwrap(),
                summary["val"][key].as_f64().unwrap(),
            );
            assert!(
                (got - want).abs() < 1e-9,
                "{model} val {key}: {got} vs {want}"
            );
        }
        let val_images = m["images"].as_u64().unwrap();
        assert!(val_images > 0);
        assert_eq!(
            a["images"].as_u64().unwrap() + val_images,
            1024,
            "train + val = the run's train_limit"
        );
    }

    // wrong input: a split, a checkpoint of another shape, a dataset of other images
    let e = stderr(&eval(r, &["--split", "validation"]));
    assert!(
        e.contains("invalid value 'validation' for '--split <SPLIT>'")
            && e.contains("[possible values: test, val, train]"),
        "{e}"
    );
    let e = stderr(&eval(r, &["--split", "val", "--dataset", "mnist"]));
    assert!(e.contains("with --dataset use `test` or `train`"), "{e}");
    let e = stderr(&eval(r, &["--model", "asembled"]));
    assert!(
        e.contains("neither a stage (meta, assemble, e2e) nor a checkpoint file"),
        "{e}"
    );
    // (one module's weights are not a whole model)
    let module = run.join("stages/incubate-0/module.safetensors");
    let out = eval(r, &["--model", module.to_str().unwrap()]);
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("module.safetensors"),
        "{e}"
    );
    let cifar = tmp.path().join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(128u8, 3072));
        r
    };
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::write(cifar.join(f), [record(1), record(2)].concat()).unwrap();
    }
    let out = eval(
        r,
        &[
            "--dataset",
            "cifar10",
            "--data-path",
            cifar.to_str().unwrap(),
        ],
    );
    let e = stderr(&out);
    assert!(
        !out.status.success()
            && e.contains("28x28x1 images in 10 classes")
            && e.contains("cifar10 has 32x32x3"),
        "{e}"
    );
    // a stage that has not finished
    let fresh = tmp.path().join("fresh");
    assert_ok(
        &incubator(&["meta", "-c", &cfg, "-d", fresh.to_str().unwrap()]),
        "meta",
    );
    let e = stderr(&eval(fresh.to_str().unwrap(), &["--model", "e2e"]));
    assert!(
        e.contains("has not finished") && e.contains("incubator e2e"),
        "{e}"
    );
}
