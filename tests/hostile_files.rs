//! Files a user gives that are not what they should be: a FIFO as an import or a plugin (never
//! waited on), a timm import with NaN weights, a position embedding of another width whose
//! values happen to fill this run's grid, a width quoted as the file has it, a damaged user file
//! (advice about the file, not about a stage), a model whose logits overflow (never a hit).

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read_tensors(path: &Path) -> Tensors {
    incubator_core::checkpoint::read(path, "").unwrap().tensors
}

fn write_tensors(path: &Path, tensors: &Tensors) {
    incubator_core::checkpoint::save(path, tensors, &BTreeMap::new()).unwrap();
}

/// The tiny run's E2E model trained for one epoch, exported for timm: (config, run, export).
fn trained(tmp: &Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let text = with_keys(TINY, &[("e2e.epochs", "1")]);
    assert_ne!(text, TINY);
    let cfg = tmp.join("tiny.toml");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let run = tmp.join("source");
    let r = run.to_str().unwrap();
    assert_ok(&incubator(&["e2e", "-c", &cfg, "-d", r]), "e2e");
    assert_ok(&incubator(&["export", "-d", r, "--model", "e2e"]), "export");
    (
        cfg,
        run.clone(),
        run.join("export/e2e-timm/model.safetensors"),
    )
}

/// `incubator args`, failing the test if it has not ended within 60 s (a FIFO waited on).
fn ends(args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_incubator"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

#[test]
fn imports_refuse_fifos_nan_weights_foreign_widths_and_say_what_is_wrong_with_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _, export) = trained(tmp.path());
    let good = read_tensors(&export);
    let import = |file: &Path, name: &str| {
        let run = tmp.path().join(name);
        ends(&[
            "import",
            file.to_str().unwrap(),
            "--as",
            "e2e",
            "-c",
            &cfg,
            "-d",
            run.to_str().unwrap(),
        ])
    };
    // the export imports as it is (the files below differ from it in one thing each)
    assert_ok(&import(&export, "fits"), "import of the export");

    let fifo = tmp.path().join("fifo.safetensors");
    mkfifo(&fifo);
    let out = import(&fifo, "fifo");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );

    let mut nan = good.clone();
    nan.get_mut("blocks.0.attn.qkv.weight").unwrap().1[3] = f32::NAN;
    nan.get_mut("blocks.0.attn.qkv.weight").unwrap().1[4] = f32::INFINITY;
    let nan_file = tmp.path().join("nan.safetensors");
    write_tensors(&nan_file, &nan);
    let out = import(&nan_file, "nan");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("blocks.0.attn.qkv.weight has 2 values that are not finite"),
        "{e}"
    );

    // pos_embed [1, 17, 32] (a 4x4 grid at width 32) stored as [1, 34, 16]: the same 544
    // values, once read as this run's grid
    let mut foreign = good.clone();
    let (shape, _) = foreign.get_mut("pos_embed").unwrap();
    assert_eq!(shape, &vec![1, 17, 32]);
    *shape = vec![1, 34, 16];
    let foreign_file = tmp.path().join("foreign.safetensors");
    write_tensors(&foreign_file, &foreign);
    let out = import(&foreign_file, "foreign");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("pos_embed has shape [1, 34, 16] in the file")
            && e.contains("checkpoint's width is 16"),
        "{e}"
    );

    // a width-16 run: the error quotes the file's shapes, not reshaped ones
    let narrow = tmp.path().join("narrow.toml");
    std::fs::write(
        &narrow,
        replaced(
            &std::fs::read_to_string(&cfg).unwrap(),
            "embed_dim = 32",
            "embed_dim = 16",
        ),
    )
    .unwrap();
    let out = ends(&[
        "import",
        export.to_str().unwrap(),
        "--as",
        "e2e",
        "-c",
        narrow.to_str().unwrap(),
        "-d",
        tmp.path().join("narrow").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("cls_token has shape [1, 1, 32] in the file, this run's model needs [1, 1, 16]")
            && e.contains("model.embed_dim is 16"),
        "{e}"
    );

    let garbage = tmp.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}").unwrap();
    let out = import(&garbage, "garbage");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("give a timm VisionTransformer") && !e.contains("re-run the stage"),
        "{e}"
    );
}

#[test]
fn a_fifo_as_a_plugin_library_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("libincubator_nope.so");
    mkfifo(&fifo);
    let out = ends(&["plugins", "check", fifo.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    let out = ends(&["plugins", "list", "--plugin", fifo.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn logits_that_overflow_are_never_counted_as_hits() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, run, _) = trained(tmp.path());
    let mut model = read_tensors(&run.join("stages/e2e/model.safetensors"));
    for v in &mut model.get_mut("head.weight").unwrap().1 {
        // finite weights, logits of +-inf (and NaN from inf - inf)
        *v = if *v >= 0.0 { f32::MAX } else { -f32::MAX };
    }
    let file = tmp.path().join("overflow.safetensors");
    write_tensors(&file, &model);
    let out = incubator(&[
        "eval",
        "-d",
        run.to_str().unwrap(),
        "--model",
        file.to_str().unwrap(),
    ]);
    assert_ok(&out, "eval");
    let dir = std::fs::read_dir(run.join("eval"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("overflow-")
        })
        .expect("eval wrote RUN/eval/overflow-<dataset>-test");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let non_finite = metrics["non_finite"].as_u64().unwrap();
    assert!(non_finite > 0, "{metrics}");
    assert!(
        metrics["top5"].as_f64().unwrap() < 0.5,
        "rows of non-finite logits counted as top-5 hits: {metrics}"
    );
    assert!(stderr(&out).contains("not finite"), "{}", stderr(&out));
}

#[test]
fn numeric_flags_out_of_range_are_named_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for args in [
        vec!["bench-loader", dir, "--batch", "0"],
        vec!["bench-loader", dir, "--size", "100000"],
        vec!["bench", "--steps", "0"],
        vec!["bench", "--batch", "0"],
        vec!["bench", "--rounds", "0"],
        vec!["data", "folder", "mnist", "--out", dir, "--side", "0"],
        vec!["data", "folder", "mnist", "--out", dir, "--side", "100000"],
        vec!["run", "-d", dir, "--jobs", "0"],
        vec!["export", "-d", dir, "--check-images", "0"],
    ] {
        let out = incubator(&args);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        let flag = args.iter().rev().nth(1).unwrap();
        assert!(
            e.contains(flag) && e.contains("not in ") && !e.contains("panicked"),
            "{args:?}: {e}"
        );
    }
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "a refused flag wrote something"
    );
}

/// Every I/O failure names its path (the OS's "File exists", "Not a directory", "Read-only file
/// system" name none), and `data folder` on a disk that fills up keeps nothing half-written in
/// the way of the retry.
#[test]
fn io_errors_name_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sweep-strategies.toml"
    );

    let e = stderr(&incubator(&["sweep", "run", spec, "-d", &s(&file)]));
    assert!(
        e.contains(&format!("sweep directory {} is a file", file.display())),
        "{e}"
    );
    let e = stderr(&incubator(&[
        "data",
        "folder",
        "embedded-mnist",
        "--out",
        &s(&file),
    ]));
    assert!(
        e.contains(&format!("--out {} is a file", file.display())),
        "{e}"
    );
    let under = file.join("sub");
    let e = stderr(&incubator(&[
        "data",
        "folder",
        "embedded-mnist",
        "--out",
        &s(&under),
    ]));
    assert!(
        e.contains(&under.display().to_string()) && e.contains("Not a directory"),
        "{e}"
    );

    // a file where the run keeps a directory
    let cfg = write_config(tmp.path(), TINY);
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join("events"), "").unwrap();
    let e = stderr(&incubator(&["e2e", "-c", &cfg, "-d", &s(&run)]));
    assert!(
        e.contains(&run.join("events").display().to_string()) && e.contains("File exists"),
        "{e}"
    );
}

/// A read-only file system and a disk that fills up (a tmpfs: root only, as CI runs).
#[test]
#[ignore = "needs root: mounts a tmpfs (./scripts/test.sh runs it)"]
fn a_read_only_or_full_disk_names_its_path_and_a_failed_folder_leaves_nothing_in_the_way() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cfg = write_config(tmp.path(), TINY);
    // a read-only file system
    let ro = Tmpfs::mount_with(&tmp.path().join("ro"), "ro");
    let e = stderr(&incubator(&[
        "e2e",
        "-c",
        &cfg,
        "-d",
        &s(&ro.0.join("run")),
    ]));
    assert!(
        e.contains(&ro.0.join("run").display().to_string()) && e.contains("Read-only file system"),
        "{e}"
    );

    // a disk that fills up while the folder is written
    let disk = Tmpfs::mount(&tmp.path().join("disk"), 1);
    let out = disk.0.join("folder");
    let e = stderr(&incubator(&[
        "data",
        "folder",
        "embedded-mnist",
        "--out",
        &s(&out),
    ]));
    assert!(
        e.contains(&format!("writing the image folder {}", out.display()))
            && e.contains("No space left on device")
            && e.contains("run the same command again"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let again = incubator(&[
        "data",
        "folder",
        "embedded-mnist",
        "--out",
        &s(&out),
        "--train-limit",
        "20",
        "--test-limit",
        "10",
    ]);
    assert_ok(&again, "the retry with fewer images");
    let count = |split: &str| {
        std::fs::read_dir(out.join(split))
            .unwrap()
            .map(|c| std::fs::read_dir(c.unwrap().path()).unwrap().count())
            .sum::<usize>()
    };
    assert_eq!((count("train"), count("val")), (20, 10));
}
