//! Image folders (`data.dataset = "folder"`), through the real binary on real images: the
//! embedded MNIST subset written out as PNG and as JPEG files in the ImageNet layout.
//!
//! A folder run trains every stage and its evaluation repeats the training's; a run killed
//! mid-epoch resumes to the uninterrupted bytes (the loader's per-image streams); unreadable
//! images and other files are skipped with a warning and counted; an empty class, a missing
//! split, an unknown class and a folder whose classes changed under a run are refused with
//! what to do, leaving nothing behind.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `incubator data folder` of the first `train`/`val` embedded MNIST images.
fn write_folder(dir: &Path, format: &str, train: usize, val: usize) -> PathBuf {
    let out = dir.join(format!("mnist-{format}"));
    let o = incubator(&[
        "data",
        "folder",
        "embedded-mnist",
        "--out",
        out.to_str().unwrap(),
        "--format",
        format,
        "--train-limit",
        &train.to_string(),
        "--test-limit",
        &val.to_string(),
    ]);
    assert_ok(&o, "incubator data folder");
    out
}

fn config(folder: &Path, extra: &str) -> String {
    format!(
        r#"seed = 3
[model]
embed_dim = 32
depth = 4
num_heads = 2
patch_size = 8
[split]
divided_depths = [1, 1, 1, 1]
[data]
dataset = "folder"
path = "{}"
image_size = 32
workers = 2
[optim]
batch_size = 32
[meta]
epochs = 1
[incubate]
epochs = 1
[finetune]
epochs = 1
[e2e]
epochs = 2
{extra}"#,
        folder.display()
    )
}

fn stage(args: &[&str], cfg: &str, run: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_incubator"));
    cmd.args(args)
        .args(["--no-progress", "-c", cfg, "-d", run.to_str().unwrap()]);
    cmd.env_remove("INCUBATOR_CRASH_AT");
    cmd.output().unwrap()
}

/// `incubator eval` of `run`'s `model` (on another image folder when given): its
/// metrics.json, or the failed command's output.
fn eval(
    run: &Path,
    model: &str,
    folder: Option<&Path>,
) -> Result<serde_json::Value, std::process::Output> {
    let out = tempfile::tempdir().unwrap();
    let folder = folder.map(|f| f.to_str().unwrap().to_string());
    let mut args = vec!["eval", "-d", run.to_str().unwrap(), "--model", model];
    args.extend(["--out", out.path().to_str().unwrap()]);
    if let Some(f) = &folder {
        args.extend(["--dataset", "folder", "--data-path", f]);
    }
    let o = incubator(&args);
    if !o.status.success() {
        return Err(o);
    }
    let text = std::fs::read_to_string(out.path().join("metrics.json")).unwrap();
    Ok(serde_json::from_str(&text).unwrap())
}

fn summary(run: &Path, stage: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(run.join("stages").join(stage).join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_folder_run_trains_every_stage_and_eval_repeats_its_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let png = write_folder(tmp.path(), "png", 256, 96);
    let jpeg = write_folder(tmp.path(), "jpeg", 256, 96);
    // the layout: ten class directories, files sorted in label order
    let classes: Vec<String> = {
        let mut c: Vec<String> = std::fs::read_dir(png.join("train"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        c.sort();
        c
    };
    assert_eq!(classes, (0..10).map(|d| d.to_string()).collect::<Vec<_>>());
    let cfg = write_config(tmp.path(), &config(&png, ""));
    let run = tmp.path().join("run");
    let o = stage(&["run"], &cfg, &run);
    assert_ok(&o, "incubator run on a folder");
    let recorded: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(run.join("classes.json")).unwrap()).unwrap();
    assert_eq!(recorded, classes);
    for s in ["meta", "incubate-0", "incubate-3", "assemble", "e2e"] {
        let top1 = summary(&run, s)["top1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&top1), "{s}: {top1}");
    }
    // eval on the run's own split gives the stage's numbers (the same evaluation pipeline)
    for (model, stage_name) in [("e2e", "e2e"), ("assemble", "assemble")] {
        let m = eval(&run, model, None).unwrap_or_else(|o| panic!("eval: {}", stderr(&o)));
        let s = summary(&run, stage_name);
        assert_eq!(m["images"], 96);
        assert_eq!(m["top1"], s["top1"], "{model}");
        assert_eq!(m["loss"], s["test_loss"], "{model}");
    }
    // the same images as JPEG: another folder with the same classes; JPEG's loss changes
    // the pixels a little, so the accuracy is close, not equal
    let m = eval(&run, "e2e", Some(&jpeg)).unwrap_or_else(|o| panic!("eval: {}", stderr(&o)));
    let png_top1 = summary(&run, "e2e")["top1"].as_f64().unwrap();
    let jpeg_top1 = m["top1"].as_f64().unwrap();
    assert!(
        (png_top1 - jpeg_top1).abs() <= 0.1,
        "png {png_top1} jpeg {jpeg_top1}"
    );
    // the report reads the run without its folder
    std::fs::rename(&png, tmp.path().join("moved")).unwrap();
    let o = incubator(&["report", "-d", run.to_str().unwrap()]);
    assert_ok(&o, "incubator report without the folder");
    let o = incubator(&["eval", "-d", run.to_str().unwrap(), "--model", "e2e"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("data.path") && stderr(&o).contains("train"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_stage_of_a_folder_run_killed_mid_epoch_resumes_to_the_uninterrupted_model() {
    let tmp = tempfile::tempdir().unwrap();
    let png = write_folder(tmp.path(), "png", 256, 64);
    // mixing on, so that the main stream and the loader's streams both matter; repeated
    // augmentation, so that one image's copies in a batch must differ the same way again
    let extra = "[checkpoint]\nevery_steps = 2\n[augment]\nhflip = true\nmix_prob = 1.0\nrepeated_augment = 3\n";
    let cfg = write_config(tmp.path(), &config(&png, extra));
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    // 7 steps per epoch (256 images less the validation split's 26); the state is saved
    // every 2 steps: a kill after step 5 resumes at step 4 of epoch 1, after step 11 at step
    // 3 of epoch 2 (the E2E stage trains 2 epochs)
    let stages: [(&[&str], &str, &str); 7] = [
        (&["meta"], "step:5", "epoch 1 step 4/7"),
        (&["incubate", "--module", "0"], "step:5", "epoch 1 step 4/7"),
        (&["incubate", "--module", "1"], "step:5", "epoch 1 step 4/7"),
        (&["incubate", "--module", "2"], "step:5", "epoch 1 step 4/7"),
        (&["incubate", "--module", "3"], "step:5", "epoch 1 step 4/7"),
        (&["assemble"], "step:5", "epoch 1 step 4/7"),
        (&["e2e"], "step:11", "epoch 2 step 3/7"),
    ];
    use std::os::unix::process::ExitStatusExt;
    for (args, crash_at, resumes_at) in stages {
        assert_ok(
            &stage(args, &cfg, &whole),
            &format!("uninterrupted {args:?}"),
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_incubator"));
        cmd.args(args)
            .args(["--no-progress", "-c", &cfg, "-d", killed.to_str().unwrap()])
            .env("INCUBATOR_CRASH_AT", crash_at);
        let o = cmd.output().unwrap();
        assert_eq!(
            o.status.signal(),
            Some(9),
            "{args:?} was not killed: {}",
            stderr(&o)
        );
        let o = stage(args, &cfg, &killed);
        assert_ok(&o, &format!("resumed {args:?}"));
        assert!(
            stderr(&o).contains(&format!("resuming at {resumes_at}")),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let files = |run: &Path| {
        model_files(run)
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (a, b) = (files(&whole), files(&killed));
    // meta, four modules, the assembled stack and its fine-tune, e2e
    assert_eq!(a.len(), 8, "{:?}", a.keys());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, x) in &a {
        assert!(*x == b[name], "{name}: the resumed stage's model differs");
    }
    // and the number of loader threads changes nothing
    let cfg0 = write_config(
        &tmp.path().join("w0").tap_mkdir(),
        &replaced(&config(&png, extra), "workers = 2", "workers = 0"),
    );
    let w0 = tmp.path().join("w0run");
    assert_ok(
        &stage(&["e2e"], &cfg0, &w0),
        "e2e decoding on the training thread",
    );
    let bytes = |run: &Path| std::fs::read(run.join("stages/e2e/model.safetensors")).unwrap();
    assert!(
        bytes(&whole) == bytes(&w0),
        "workers = 0 trained another model"
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn unreadable_images_and_other_files_are_skipped_with_a_count() {
    let tmp = tempfile::tempdir().unwrap();
    let png = write_folder(tmp.path(), "png", 128, 64);
    // a truncated PNG and a text file named .jpg in train/; a corrupt image in val/; a
    // README and a dot file that are not images at all
    let victim = std::fs::read_dir(png.join("train/3"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(png.join("train/5/notes.jpg"), "not an image").unwrap();
    // a stray file beside the class directories is not a class
    std::fs::write(png.join("train/README.txt"), "").unwrap();
    std::fs::write(png.join("train/7/README.txt"), "about class 7").unwrap();
    std::fs::write(png.join("train/7/.DS_Store"), "finder").unwrap();
    let val_victim = std::fs::read_dir(png.join("val/2"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&val_victim, b"\x89PNG garbage").unwrap();
    let cfg = write_config(tmp.path(), &config(&png, ""));
    let run = tmp.path().join("run");
    let o = stage(&["e2e"], &cfg, &run);
    assert_ok(&o, "e2e over a folder with bad files");
    let err = stderr(&o);
    assert!(
        err.contains("skipped 1 files that are not .jpg/.jpeg/.png images")
            && err.contains("README.txt"),
        "{err}"
    );
    assert!(!err.contains(".DS_Store"), "{err}");
    for bad in [&victim, &png.join("train/5/notes.jpg")] {
        assert!(
            err.contains(&format!("warning: cannot decode {}", bad.display()))
                && err.contains("replaced by the next readable image"),
            "{err}"
        );
    }
    assert!(
        err.contains(&format!("cannot decode {}", val_victim.display()))
            && err.contains("left out of the evaluation"),
        "{err}"
    );
    // once per file, however many epochs read it
    assert_eq!(
        err.matches(&format!("cannot decode {}", victim.display()))
            .count(),
        1,
        "{err}"
    );
    // the evaluation counts the 63 readable images
    let m = eval(&run, "e2e", None).unwrap_or_else(|o| panic!("eval: {}", stderr(&o)));
    assert_eq!(m["images"], 63);
}

#[test]
fn bad_folders_are_refused_with_what_to_do_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let png = write_folder(tmp.path(), "png", 64, 32);
    let refuse = |name: &str, folder: &Path, wants: &[&str]| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = write_config(&dir, &config(folder, ""));
        let run = dir.join("run");
        let o = stage(&["e2e"], &cfg, &run);
        assert!(!o.status.success(), "{name} was accepted");
        let err = stderr(&o);
        for w in wants {
            assert!(err.contains(w), "{name}: {w:?} not in\n{err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(!run.exists(), "{name} left a run directory");
    };
    // an empty class
    let empty = tmp.path().join("empty");
    copy_dir(&png, &empty);
    for f in std::fs::read_dir(empty.join("train/4")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    refuse(
        "empty",
        &empty,
        &[
            "class \"4\"",
            "has no images",
            "remove the directory or add",
        ],
    );
    // a class directory with only non-images
    std::fs::write(empty.join("train/4/labels.csv"), "x").unwrap();
    refuse("only-text", &empty, &["has no images (1 other files"]);
    // no val/
    let no_val = tmp.path().join("no-val");
    copy_dir(&png, &no_val);
    std::fs::remove_dir_all(no_val.join("val")).unwrap();
    refuse(
        "no-val",
        &no_val,
        &["val", "does not exist", "ImageNet layout"],
    );
    // a class in val/ that train/ lacks
    let extra = tmp.path().join("extra");
    copy_dir(&png, &extra);
    std::fs::create_dir_all(extra.join("val/zebra")).unwrap();
    refuse("extra", &extra, &["zebra", "train/ does not have"]);
    // the crop size is data.image_size, not model.image_size
    let dir = tmp.path().join("model-size");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = write_config(
        &dir,
        &replaced(
            &config(&png, ""),
            "patch_size = 8",
            "patch_size = 8\nimage_size = 64",
        ),
    );
    let o = stage(&["e2e"], &cfg, &dir.join("run"));
    assert!(
        !o.status.success() && stderr(&o).contains("cropped to data.image_size: set that instead"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("run").exists());
    // data.path that is not a folder at all
    refuse(
        "nowhere",
        &tmp.path().join("nowhere"),
        &["nowhere", "does not exist", "data.path"],
    );

    // classes that change under a run: the run's recorded classes win, with an error
    let changing = tmp.path().join("changing");
    copy_dir(&png, &changing);
    let dir = tmp.path().join("changes");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = write_config(&dir, &config(&changing, ""));
    let run = dir.join("run");
    assert_ok(&stage(&["meta"], &cfg, &run), "meta");
    std::fs::rename(changing.join("train/9"), changing.join("train/nine")).unwrap();
    let o = stage(&["e2e"], &cfg, &run);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("classes.json")
            && err.contains("missing [\"9\"]")
            && err.contains("new [\"nine\"]"),
        "{err}"
    );
    assert!(!run.join("stages/e2e").exists() || !run.join("stages/e2e/summary.json").exists());
}

#[test]
fn a_folder_of_unreadable_images_stops_with_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let png = write_folder(tmp.path(), "png", 64, 32);
    let cfg = write_config(tmp.path(), &config(&png, ""));
    let run = tmp.path().join("run");
    assert_ok(&stage(&["e2e"], &cfg, &run), "e2e");
    let bad = tmp.path().join("bad");
    copy_dir(&png, &bad);
    let spoil = |split: &str| {
        for class in std::fs::read_dir(bad.join(split)).unwrap() {
            for f in std::fs::read_dir(class.unwrap().path()).unwrap() {
                std::fs::write(f.unwrap().path(), b"truncated").unwrap();
            }
        }
    };
    // an evaluation of which no image decodes is an error, not a top-1 of 0
    spoil("val");
    let o = eval(&run, "e2e", Some(&bad)).expect_err("an evaluation of nothing");
    let e = stderr(&o);
    assert!(
        e.contains("none of the 32 evaluation images could be decoded"),
        "{e}"
    );
    // training stops when images keep failing, naming where
    spoil("train");
    let dir = tmp.path().join("bad-run");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = write_config(&dir, &config(&bad, ""));
    let o = stage(&["e2e"], &cfg, &dir.join("run"));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("16 images in a row")
            && e.contains("cannot be decoded")
            && e.contains("check the folder's files"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn data_folder_refuses_to_overwrite_and_names_bad_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let png = write_folder(tmp.path(), "png", 16, 8);
    let o = incubator(&[
        "data",
        "folder",
        "embedded-mnist",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("already has train/"),
        "{}",
        stderr(&o)
    );
    let o = incubator(&[
        "data",
        "folder",
        "embedded-mnist",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
        "--format",
        "gif",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("[possible values: png, jpeg]"),
        "{}",
        stderr(&o)
    );
}

/// The paper's higher-resolution fine-tune: a model assembled at one resolution, exported for
/// timm, imported as the start of a run at twice the resolution (position embeddings resized
/// by bicubic interpolation, every other tensor as it was) and fine-tuned there.
#[test]
fn an_assembled_model_fine_tunes_at_a_higher_resolution() {
    let tmp = tempfile::tempdir().unwrap();
    let png = write_folder(tmp.path(), "png", 256, 64);
    let low_dir = tmp.path().join("low");
    std::fs::create_dir_all(&low_dir).unwrap();
    let low_cfg = write_config(&low_dir, &config(&png, ""));
    let low = tmp.path().join("run-32");
    assert_ok(&stage(&["run"], &low_cfg, &low), "run at 32 px");
    let o = incubator(&["export", "-d", low.to_str().unwrap(), "--model", "assemble"]);
    assert_ok(&o, "export the assembled model");
    let exported = low.join("export/assemble-timm/model.safetensors");

    let high_dir = tmp.path().join("high");
    std::fs::create_dir_all(&high_dir).unwrap();
    let high_cfg = write_config(
        &high_dir,
        &replaced(&config(&png, ""), "image_size = 32", "image_size = 64"),
    );
    let high = tmp.path().join("run-64");
    let o = incubator(&[
        "import",
        exported.to_str().unwrap(),
        "--as",
        "init",
        "-c",
        &high_cfg,
        "-d",
        high.to_str().unwrap(),
    ]);
    assert_ok(&o, "import at 64 px");
    assert!(
        stderr(&o).contains("pos_embed resized from a 4x4 to a 8x8 patch grid"),
        "{}",
        stderr(&o)
    );
    let read = |p: &Path| incubator_core::checkpoint::read(p, "").unwrap().tensors;
    let (timm, init) = (
        read(&exported),
        read(&high.join("stages/e2e/init.safetensors")),
    );
    let (old_shape, old) = &timm["pos_embed"];
    let dim = *old_shape.last().unwrap();
    let (new_shape, new) = &init["stem.pos_embed"];
    assert_eq!(new_shape, &vec![65, dim]);
    // the resize itself is checked against PyTorch's F.interpolate in core/tests/pos_embed_resample.rs
    assert_eq!(
        new,
        &incubator_core::model::resample::resample_pos_embed(old, 4, 8, dim)
    );
    assert_eq!(init["stem.cls_token"].1, timm["cls_token"].1);
    assert_eq!(
        init["blocks.3.mlp.fc2.weight"],
        timm["blocks.3.mlp.fc2.weight"]
    );
    assert_eq!(init["head.weight"], timm["head.weight"]);
    // fine-tuning at 64 px: the folder's images are cropped to the new size
    let o = stage(&["e2e"], &high_cfg, &high);
    assert_ok(&o, "fine-tune at 64 px");
    let top1 = summary(&high, "e2e")["top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&top1));
    // a patch size that differs cannot be resized into: refused, naming the tensor
    let other_dir = tmp.path().join("p4");
    std::fs::create_dir_all(&other_dir).unwrap();
    let p4_cfg = write_config(
        &other_dir,
        &replaced(&config(&png, ""), "patch_size = 8", "patch_size = 4"),
    );
    let o = incubator(&[
        "import",
        exported.to_str().unwrap(),
        "--as",
        "init",
        "-c",
        &p4_cfg,
        "-d",
        other_dir.join("run").to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "a patch-4 model took patch-8 weights");
    assert!(
        stderr(&o).contains("patches are 8x8 pixels, this run's model takes 4x4")
            && stderr(&o).contains("set model.patch_size = 8"),
        "{}",
        stderr(&o)
    );
}

/// `bench-loader --torchvision` hands Python its script as `-c` source and leaves nothing in
/// the temporary folder (it wrote `incubator-loader-bench-PID.py` there, a name another user
/// could plant a link at). A stand-in for Python answers as the script does.
#[test]
fn bench_loader_gives_torchvision_its_script_as_source_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_folder(dir.path(), "png", 32, 8);
    let python = stand_in_python(
        dir.path(),
        r#"case "$2" in *images_per_s*) ;; *) echo "not loader_bench.py's source" >&2; exit 2 ;; esac
echo '{"images_per_s": 1234.0, "images": 16, "seconds": 0.01, "torch": "stand-in"}'"#,
    );
    let (out, left) = incubator_in_tmpdir(
        dir.path(),
        &[
            "bench-loader",
            folder.to_str().unwrap(),
            "--batch",
            "8",
            "--batches",
            "2",
            "--size",
            "32",
            "--torchvision",
            python.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "bench-loader --torchvision (stand-in)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| torchvision DataLoader + timm transform (torch stand-in) | 1234 |"),
        "{text}"
    );
    assert!(left.is_empty(), "left in the temporary folder: {left:?}");
}
