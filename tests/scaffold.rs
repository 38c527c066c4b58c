//! `incubator plugin new NAME` makes a renamed copy of plugins/template in a workspace, and
//! refuses what it cannot do.

mod common;
use common::*;

#[test]
fn plugin_new_copies_the_template_under_the_new_name() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("Cargo.toml"),
        "[workspace]\nmembers = [\"plugins/*\"]\n",
    )
    .unwrap();
    std::fs::create_dir(ws.path().join("plugins")).unwrap();
    let ws_s = ws.path().to_str().unwrap();

    let out = incubator(&["plugin", "new", "feature-kd", "--workspace", ws_s]);
    assert_ok(&out, "plugin new");
    let dir = ws.path().join("plugins/feature-kd");
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(
        manifest["package"]["name"].as_str(),
        Some("incubator-feature-kd")
    );
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("pub const NAME: &str = \"feature-kd\";"),
        "{lib}"
    );
    assert!(
        lib.contains("pub struct FeatureKd;") && !lib.contains("Template"),
        "{lib}"
    );
    assert!(lib.contains("declare_plugin!(NAME"), "{lib}");
    let test = std::fs::read_to_string(dir.join("tests/library.rs")).unwrap();
    assert!(
        test.contains("incubator_feature_kd::register")
            && test.contains("library_next_to_test(\"incubator-feature-kd\")")
            && test.contains("strategy = \\\"feature-kd\\\""),
        "{test}"
    );
    // short enough to read in one go: a new strategy is well under 100 lines
    assert!(lib.lines().count() < 70, "{} lines", lib.lines().count());

    let again = incubator(&["plugin", "new", "feature-kd", "--workspace", ws_s]);
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let bad = incubator(&["plugin", "new", "Feature KD", "--workspace", ws_s]);
    assert!(
        stderr(&bad).contains("lowercase letters"),
        "{}",
        stderr(&bad)
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let out = incubator(&[
        "plugin",
        "new",
        "x",
        "--workspace",
        elsewhere.path().to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("is not the incubator workspace"),
        "{}",
        stderr(&out)
    );
}
