//! A run's report says what was imported (`incubator import`): an imported E2E baseline is
//! marked and has no cost ratio (its training cost is not known here), an imported meta model
//! is named in the method's row, a baseline fine-tuned from imported weights says its
//! pretraining is not counted. The checkpoints are this engine's own timm exports, so no
//! PyTorch is needed (tests/timm.rs imports timm-made ones).

mod common;
use common::*;

#[test]
fn reports_mark_imported_models() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let a = tmp.path().join("a");
    let a_str = a.to_str().unwrap();
    assert_ok(&incubator(&["run", "-c", &cfg, "-d", a_str]), "run a");
    for model in ["e2e", "meta"] {
        assert_ok(&incubator(&["export", "-d", a_str, "--model", model]), "export");
    }
    let file = |model: &str| a.join(format!("export/{model}-timm/model.safetensors")).to_str().unwrap().to_string();
    let report = |run: &std::path::Path| std::fs::read_to_string(run.join("report.md")).unwrap();
    let plain = report(&a);
    assert!(plain.contains("| End-to-end baseline |") && plain.contains("Cost ratio"), "{plain}");
    assert!(!plain.contains("imported"), "{plain}");

    // the baseline imported: its row marked, no cost ratio
    let b = tmp.path().join("b");
    let bs = b.to_str().unwrap();
    assert_ok(&incubator(&["import", &file("e2e"), "--as", "e2e", "-c", &cfg, "-d", bs]), "import e2e");
    assert_ok(&incubator(&["run", "-d", bs]), "run b");
    let r = report(&b);
    assert!(r.contains("| e2e (imported) | 0 |"), "{r}");
    assert!(r.contains(&format!("| End-to-end baseline, imported from {} (trained elsewhere) |", file("e2e"))), "{r}");
    assert!(r.contains("No cost ratio: the baseline was imported") && !r.contains("Cost ratio (method / E2E)"), "{r}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(b.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["e2e_imported_from"], file("e2e"));
    assert_eq!(json["e2e_untrained"], true);
    // `incubator report` prints the same table
    let o = incubator(&["report", "-d", bs]);
    assert_ok(&o, "report");
    assert!(String::from_utf8_lossy(&o.stdout).contains("(trained elsewhere)"));

    // the meta model imported: the method says so, its row is marked
    let c = tmp.path().join("c");
    let cs = c.to_str().unwrap();
    assert_ok(&incubator(&["import", &file("meta"), "--as", "meta", "-c", &cfg, "-d", cs]), "import meta");
    assert_ok(&incubator(&["run", "-d", cs]), "run c");
    let r = report(&c);
    assert!(r.contains("| meta (imported) | 0 |"), "{r}");
    assert!(r.contains("| Deep Model Assembling (imported meta model + incubations + fine-tune) |"), "{r}");
    assert!(r.contains("| End-to-end baseline |") && r.contains("Cost ratio (method / E2E)"), "{r}");

    // the baseline fine-tuned from imported weights
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    assert_ok(&incubator(&["import", &file("e2e"), "--as", "init", "-c", &cfg, "-d", ds]), "import init");
    assert_ok(&incubator(&["run", "-d", ds]), "run d");
    let r = report(&d);
    assert!(r.contains("| e2e (from imported weights) |"), "{r}");
    assert!(r.contains(&format!("| End-to-end baseline, fine-tuned from {} (its pretraining not counted) |", file("e2e"))), "{r}");
    assert!(r.contains("Cost ratio (method / E2E)"), "{r}");
}
