//! `incubator export --format timm` checked by timm itself: the exported weights load into
//! timm's VisionTransformer with strict=True and its logits on the exported images agree with
//! this engine's within 1e-5 (relative), for the E2E and the assembled model.

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
        e.contains("--format \"onnx\"") && e.contains("`timm`"),
        "{e}"
    );
}
