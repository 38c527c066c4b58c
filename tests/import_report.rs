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
        assert_ok(
            &incubator(&["export", "-d", a_str, "--model", model]),
            "export",
        );
    }
    let file = |model: &str| {
        a.join(format!("export/{model}-timm/model.safetensors"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let report = |run: &std::path::Path| std::fs::read_to_string(run.join("report.md")).unwrap();
    let plain = report(&a);
    assert!(
        plain.contains("| End-to-end baseline |") && plain.contains("Cost ratio"),
        "{plain}"
    );
    assert!(!plain.contains("imported"), "{plain}");

    // the baseline imported: its row marked, no cost ratio
    let b = tmp.path().join("b");
    let bs = b.to_str().unwrap();
    assert_ok(
        &incubator(&["import", &file("e2e"), "--as", "e2e", "-c", &cfg, "-d", bs]),
        "import e2e",
    );
    assert_ok(&incubator(&["run", "-d", bs]), "run b");
    let r = report(&b);
    assert!(r.contains("| e2e (imported) | 0 |"), "{r}");
    assert!(
        r.contains(&format!(
            "| End-to-end baseline, imported from {} (trained elsewhere) |",
            file("e2e")
        )),
        "{r}"
    );
    assert!(
        r.contains("No cost ratio: the baseline was imported")
            && !r.contains("Cost ratio (method / E2E)"),
        "{r}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["e2e_imported_from"], file("e2e"));
    assert_eq!(json["e2e_untrained"], true);
    // `incubator report` prints the same table
    let o = incubator(&["report", "-d", bs]);
    assert_ok(&o, "report");
    assert!(String::from_utf8_lossy(&o.stdout).contains("(trained elsewhere)"));

    // the meta model imported: the method says so, its row is marked
    let c = tmp.path().join("c");
    let cs = c.to_str().unwrap();
    assert_ok(
        &incubator(&[
            "import",
            &file("meta"),
            "--as",
            "meta",
            "-c",
            &cfg,
            "-d",
            cs,
        ]),
        "import meta",
    );
    assert_ok(&incubator(&["run", "-d", cs]), "run c");
    let r = report(&c);
    assert!(r.contains("| meta (imported) | 0 |"), "{r}");
    assert!(
        r.contains("| Deep Model Assembling (imported meta model + incubations + fine-tune) |"),
        "{r}"
    );
    assert!(
        r.contains("| End-to-end baseline |") && r.contains("Cost ratio (method / E2E)"),
        "{r}"
    );

    // the baseline fine-tuned from imported weights
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    assert_ok(
        &incubator(&["import", &file("e2e"), "--as", "init", "-c", &cfg, "-d", ds]),
        "import init",
    );
    assert_ok(&incubator(&["run", "-d", ds]), "run d");
    let r = report(&d);
    assert!(r.contains("| e2e (from imported weights) |"), "{r}");
    assert!(
        r.contains(&format!(
            "| End-to-end baseline, fine-tuned from {} (its pretraining not counted) |",
            file("e2e")
        )),
        "{r}"
    );
    assert!(r.contains("Cost ratio (method / E2E)"), "{r}");
}

/// A model assembled with stitch layers (plugins/stitch) is not a timm VisionTransformer:
/// export refuses it, naming the glue and what can be exported instead, while eval rebuilds
/// it with its glue; the plain E2E model of the same run exports.
#[test]
fn a_stitched_assembly_is_refused_by_export_and_evaluated_with_its_glue() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library("incubator-stitch");
    let cfg = write_config(
        tmp.path(),
        &format!(
            "{TINY}[plugins]\nlibraries = [{:?}]\nmeta_design = \"thin\"\nstrategy = \"stitched\"\nassembly = \"stitched\"\n[plugins.options]\nmeta_width = 16\n",
            lib.to_str().unwrap()
        ),
    );
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    assert_ok(&incubator(&["run", "-c", &cfg, "-d", r]), "stitched run");
    let o = incubator(&["export", "-d", r, "--model", "assemble"]);
    assert!(!o.status.success(), "a stitched assembly was exported");
    let e = stderr(&o);
    assert!(
        e.contains("glue cannot be exported") && e.contains("export the E2E model"),
        "{e}"
    );
    assert!(
        !run.join("export/assemble-timm/model.safetensors").exists(),
        "a refused export left a model file"
    );
    // the thin meta model has another width: not this run's ViT either
    let o = incubator(&["export", "-d", r, "--model", "meta"]);
    assert!(
        !o.status.success(),
        "the thin meta model was exported as the run's ViT"
    );
    let e = stderr(&o);
    assert!(
        !e.contains("panicked") && e.contains("not a plain ViT of this run"),
        "{e}"
    );
    assert_ok(
        &incubator(&["export", "-d", r, "--model", "e2e"]),
        "export e2e",
    );
    let o = incubator(&["eval", "-d", r, "--model", "assemble"]);
    assert_ok(&o, "eval of the stitched assembly");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("stages/assemble/summary.json")).unwrap(),
    )
    .unwrap();
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("eval/assemble-embedded-mnist-test/metrics.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(m["top1"], summary["top1"]);
}
