//! The image-folder pipelines' resizes against torchvision's on the same files: the
//! evaluation transform (resize the shorter side to floor(size / crop_pct), bicubic, centre
//! crop) and the bicubic resize of a crop box that RandomResizedCrop does, pixel by pixel.

mod common;
use common::*;
use fast_image_resize::Resizer;
use incubator_core::data::folder::transform::{decode, resize, EvalTransform, Normalize};

#[test]
#[ignore = "needs INCUBATOR_TORCH_PYTHON: a python with torch and torchvision (./scripts/test.sh sets it)"]
fn eval_and_crop_resizes_match_torchvision() {
    let tmp = tempfile::tempdir().unwrap();
    // real photos are not reachable here: gradients with hard edges (what resampling filters
    // disagree on), in the aspect ratios a folder brings, plus an MNIST digit upscaled
    let mut paths = Vec::new();
    for (i, (w, h)) in [(97u32, 61u32), (300, 200), (45, 130), (224, 224)]
        .into_iter()
        .enumerate()
    {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let edge = if (x / 9 + y / 7) % 2 == 0 { 60 } else { 0 };
            image::Rgb([
                ((x * 255 / w) as u8).saturating_add(edge),
                (y * 255 / h) as u8,
                (((x + y) * 255) / (w + h)) as u8,
            ])
        });
        let path = tmp.path().join(format!("{i}.png"));
        img.save(&path).unwrap();
        paths.push(path);
    }
    let folder = tmp.path().join("mnist");
    assert_ok(
        &incubator(&[
            "data",
            "folder",
            "embedded-mnist",
            "--out",
            folder.to_str().unwrap(),
            "--format",
            "jpeg",
            "--side",
            "90",
            "--train-limit",
            "1",
            "--test-limit",
            "1",
        ]),
        "data folder",
    );
    paths.push(
        std::fs::read_dir(folder.join("train/5"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    );

    let (size, crop_pct, crop_box, out) = (64usize, 0.875, (5u32, 7u32, 40u32, 33u32), 32u32);
    let mut args: Vec<std::ffi::OsString> = [size.to_string(), crop_pct.to_string()]
        .into_iter()
        .chain([crop_box.0, crop_box.1, crop_box.2, crop_box.3, out].map(|v| v.to_string()))
        .map(Into::into)
        .collect();
    args.extend(paths.iter().map(|p| p.clone().into_os_string()));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let theirs = python_json("INCUBATOR_TORCH_PYTHON", "torchvision_crops.py", &refs);

    let t = EvalTransform {
        size,
        crop_pct,
        normalize: Normalize {
            mean: [0.0; 3],
            std: [1.0; 3],
        },
    };
    let mut resizer = Resizer::new();
    for (k, path) in paths.iter().enumerate() {
        let img = decode(path, u64::MAX).unwrap();
        let ours = [
            ("eval", t.crop(&mut resizer, &img).into_raw()),
            (
                "resized_crop",
                resize(&mut resizer, &img, crop_box, (out, out)).into_raw(),
            ),
        ];
        for (what, ours) in ours {
            let want: Vec<u8> = theirs[k][what]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u8)
                .collect();
            assert_eq!(ours.len(), want.len(), "{what} of {}", path.display());
            let diffs: Vec<i32> = ours
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .collect();
            let max = *diffs.iter().max().unwrap();
            let off = diffs.iter().filter(|&&d| d > 0).count();
            // The same filter (Catmull-Rom, antialiased when shrinking), pass order and
            // geometry: a level of difference on a few percent of the values (two on a few
            // in ten thousand) is the libraries' different fixed-point precision; a shifted
            // crop, another filter or another pass order differs by 3 to tens of levels.
            let over = diffs.iter().filter(|&&d| d > 1).count();
            assert!(
                max <= 2 && over * 1000 <= diffs.len(),
                "{what} of {}: max difference {max} levels, {over} values over 1, {off} over 0 of {}",
                path.display(),
                diffs.len()
            );
            assert!(
                off * 20 <= diffs.len(),
                "{what} of {}: {off} of {} values differ",
                path.display(),
                diffs.len()
            );
        }
    }
}
