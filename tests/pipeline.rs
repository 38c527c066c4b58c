//! The whole pipeline through the real binary on the embedded MNIST data.

mod common;
use common::*;

#[test]
fn pipeline_learns_and_separate_stage_processes_give_the_same_models() {
    let tmp = tempfile::tempdir().unwrap();
    // the embedded subset's own files, as a dataset on disk that can go away (below)
    let mnist = tmp.path().join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("core/assets/mnist-subset");
    for f in std::fs::read_dir(&assets).unwrap().flatten() {
        std::fs::copy(f.path(), mnist.join(f.file_name())).unwrap();
    }
    let cfg = write_config(
        tmp.path(),
        &with_keys(
            TINY,
            &[
                ("data.dataset", "\"mnist\""),
                ("data.path", &format!("{:?}", mnist.to_str().unwrap())),
            ],
        ),
    );
    let all = tmp.path().join("all");
    let all_s = all.to_str().unwrap();
    let out = incubator(&["run", "-c", &cfg, "-d", all_s]);
    assert_ok(&out, "incubator run");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("End-to-end baseline") && table.contains("Cost ratio"),
        "{table}"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(all.join("report.json")).unwrap()).unwrap();
    let assembled = report["assembled_top1"].as_f64().unwrap();
    let e2e = report["e2e_top1"].as_f64().unwrap();
    // 10 classes: chance is 10%; 25% on 256 test images is 8 standard deviations above it
    assert!(assembled > 0.25, "assembled top-1 {assembled}");
    assert!(e2e > 0.25, "e2e top-1 {e2e}");
    assert_eq!(report["stages"].as_array().unwrap().len(), 7);

    // The same config, each stage its own process, incubations out of order.
    let sep = tmp.path().join("separate");
    let sep_s = sep.to_str().unwrap();
    assert_ok(&incubator(&["meta", "-c", &cfg, "-d", sep_s]), "meta");
    for m in ["3", "1", "0", "2"] {
        assert_ok(
            &incubator(&["incubate", "--module", m, "-d", sep_s]),
            "incubate",
        );
    }
    assert_ok(&incubator(&["assemble", "-d", sep_s]), "assemble");
    assert_ok(&incubator(&["e2e", "-d", sep_s]), "e2e");
    for file in [
        "stages/meta/model.safetensors",
        "stages/incubate-0/module.safetensors",
        "stages/incubate-3/module.safetensors",
        "stages/assemble/assembled.safetensors",
        "stages/assemble/model.safetensors",
        "stages/e2e/model.safetensors",
    ] {
        assert!(
            std::fs::read(all.join(file)).unwrap() == std::fs::read(sep.join(file)).unwrap(),
            "{file} differs"
        );
    }

    // Re-running a finished stage skips it and changes nothing.
    let before = std::fs::read(sep.join("stages/meta/model.safetensors")).unwrap();
    let again = incubator(&["meta", "-d", sep_s]);
    assert_ok(&again, "meta again");
    assert!(stderr(&again).contains("already finished"));
    assert_eq!(
        before,
        std::fs::read(sep.join("stages/meta/model.safetensors")).unwrap()
    );

    // The event stream has every stage, and TensorBoard files exist per stage.
    let events = std::fs::read_to_string(all.join("events/incubate-2.jsonl")).unwrap();
    assert!(events.contains("\"event\":\"stage_finished\""));
    for slug in ["meta", "incubate-0", "assemble", "e2e"] {
        let dir = all.join("tensorboard").join(slug);
        assert!(
            std::fs::read_dir(&dir).unwrap().count() >= 1,
            "no TensorBoard file in {}",
            dir.display()
        );
    }
    let report_cmd = incubator(&["report", "-d", sep_s]);
    assert_ok(&report_cmd, "report");

    // Commands that only read a run do not load its data: with the dataset gone, the report
    // and a Slurm plan still work, and a training command says what is missing.
    std::fs::rename(&mnist, tmp.path().join("moved")).unwrap();
    let table = incubator(&["report", "-d", sep_s]);
    assert_ok(&table, "report without the data");
    assert_eq!(
        String::from_utf8_lossy(&table.stdout),
        String::from_utf8_lossy(&report_cmd.stdout),
        "the same table"
    );
    let plan = incubator(&["slurm", "submit", "--dry-run", "-d", sep_s]);
    assert_ok(&plan, "slurm submit --dry-run without the data");
    assert!(String::from_utf8_lossy(&plan.stdout).contains("nothing to submit"));
    std::fs::remove_file(sep.join("stages/e2e/summary.json")).unwrap();
    let train = incubator(&["e2e", "-d", sep_s]);
    assert!(!train.status.success());
    let e = stderr(&train);
    assert!(
        e.contains(mnist.to_str().unwrap()) && e.contains("data.dataset"),
        "{e}"
    );
}
