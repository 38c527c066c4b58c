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

/// `plugin new NAME --path DIR`: a crate outside the repository that depends on the engine by
/// path, builds its library and an `incubator` around the same engine, and trains with them;
/// another build of the engine (this repository's binary) refuses the library.
#[test]
fn an_out_of_tree_plugin_builds_loads_and_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feature-kd");
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = incubator(&[
        "plugin",
        "new",
        "feature-kd",
        "--path",
        dir.to_str().unwrap(),
        "--engine",
        repo,
    ]);
    assert_ok(&out, "plugin new --path");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("incubator-core = {{ path = \"{repo}/core\" }}")),
        "{manifest}"
    );
    assert!(dir.join("Cargo.lock").is_file() && dir.join(".cargo/config.toml").is_file());
    // Every engine crate it builds is built as the engine's workspace builds its members (not
    // at the opt-level "*" gives dependencies).
    let tree = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .output()
        .unwrap();
    assert_ok(&tree, "cargo tree of the out-of-tree crate");
    let tree = String::from_utf8_lossy(&tree.stdout).into_owned();
    let mut engine_crates: Vec<&str> = tree
        .lines()
        .filter(|l| l.contains(&format!("({repo}")))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    engine_crates.sort();
    engine_crates.dedup();
    assert!(
        engine_crates.contains(&"incubator-core"),
        "{engine_crates:?}"
    );
    for c in &engine_crates {
        assert!(
            manifest.contains(&format!("[profile.dev.package.{c}]\nopt-level = 1\n")),
            "{c} is built at another opt-level than in the engine's workspace:\n{manifest}"
        );
    }

    // The flow its README gives, in a persistent target folder (later runs rebuild only what
    // changed): its own test (the library loaded vs compiled in, as every plugin crate's)
    // builds the engine once, in release...
    let target = std::path::Path::new(repo).join("target/out-of-tree");
    let cargo = |verb: &str| {
        std::process::Command::new(env!("CARGO"))
            .args([verb, "--release", "--offline", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap()
    };
    let test = cargo("test");
    assert_ok(&test, "cargo test --release of the out-of-tree crate");
    // ...and the build of the library and the binary after it compiles nothing more.
    let build = cargo("build");
    assert_ok(&build, "cargo build --release of the out-of-tree crate");
    assert!(
        !stderr(&build).contains("Compiling"),
        "the build after the tests compiled again:\n{}",
        stderr(&build)
    );
    let lib = target.join("release/libincubator_feature_kd.so");
    let own_incubator = target.join("release/incubator");
    assert!(lib.is_file() && own_incubator.is_file());

    let cfg = write_config(
        tmp.path(),
        &format!(
            "{}[plugins]\nstrategy = \"feature-kd\"\nlibraries = [{:?}]\n",
            with_keys(TINY, &[("e2e.enabled", "false")]),
            lib.display().to_string()
        ),
    );
    let run = tmp.path().join("run");
    // (cargo test points LD_LIBRARY_PATH at this repository's engine, which would win over the
    // binary's own RUNPATH)
    let out = std::process::Command::new(&own_incubator)
        .args([
            "run",
            "--no-progress",
            "-c",
            &cfg,
            "-d",
            run.to_str().unwrap(),
        ])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert_ok(&out, "training with the out-of-tree plugin");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("strategy feature-kd"), "{report}");
    assert!(run.join("stages/assemble/model.safetensors").is_file());

    // This repository's binary is another engine build: refused, with what to run instead.
    let other = tmp.path().join("other");
    let out = incubator(&["run", "-c", &cfg, "-d", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("another build of the engine") && e.contains("target/<profile>/incubator"),
        "{e}"
    );

    // A folder in use, and an engine path that is not the repository, are refused.
    let again = incubator(&[
        "plugin",
        "new",
        "x",
        "--path",
        dir.to_str().unwrap(),
        "--engine",
        repo,
    ]);
    assert!(
        stderr(&again).contains("is not empty"),
        "{}",
        stderr(&again)
    );
    let wrong = incubator(&[
        "plugin",
        "new",
        "x",
        "--path",
        tmp.path().join("y").to_str().unwrap(),
        "--engine",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(
        stderr(&wrong).contains("is not the incubator repository"),
        "{}",
        stderr(&wrong)
    );
}
