//! `incubator export --format timm` checked by timm itself: the exported weights load into
//! timm's VisionTransformer with strict=True and its logits on the exported images agree with
//! this engine's within 1e-5 (relative), for the E2E and the assembled model.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn torch_python() -> PathBuf {
    let Some(python) = std::env::var_os("INCUBATOR_TORCH_PYTHON") else {
        panic!(
            "INCUBATOR_TORCH_PYTHON is not set: a python with torch, timm and safetensors. \
             ./scripts/test.sh makes one: python3 -m venv .venv-torch && \
             .venv-torch/bin/pip install torch timm safetensors"
        )
    };
    Path::new(env!("CARGO_MANIFEST_DIR")).join(PathBuf::from(python))
}

#[test]
#[ignore = "needs INCUBATOR_TORCH_PYTHON: a python with torch and timm (./scripts/test.sh sets it)"]
fn exported_models_load_into_timm_strictly_and_give_the_same_logits() {
    let python = torch_python();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    assert_ok(&incubator(&["run", "-c", &cfg, "-d", r]), "incubator run");
    for model in ["e2e", "assemble"] {
        assert_ok(&incubator(&["export", "-d", r, "--model", model]), "export");
        let dir = run.join(format!("export/{model}-timm"));
        let out = std::process::Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/timm_check.py"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
