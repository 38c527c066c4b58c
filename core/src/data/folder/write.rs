//! Writing an in-memory dataset out as an image folder (`train/<class>/<n>.png`,
//! `val/<class>/...`): real images in the ImageNet layout, for trying the folder pipeline,
//! for tests and for the loader benchmark.

use std::path::Path;

use image::{imageops::FilterType, DynamicImage, GrayImage, RgbImage};

use crate::data::{DataSplit, Dataset};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
}

impl ImageFormat {
    fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
        }
    }
}

/// Class directory names that sort in label order: `0`..`9`, or `00`..`99`, ...
pub fn class_name(label: usize, num_classes: usize) -> String {
    let width = (num_classes.max(2) - 1).to_string().len();
    format!("{label:0width$}")
}

/// Writes `split` under `out` (train/ and val/), each image resized to `side` pixels (bicubic;
/// `None`: as stored). Returns the number of files written. The images are written into a
/// hidden staging directory in `out` that becomes train/ and val/ only when complete: a failure
/// (a full disk) or a kill leaves no half-written folder in the way of the retry.
pub fn write_folder(
    split: &DataSplit,
    out: &Path,
    format: ImageFormat,
    side: Option<u32>,
) -> std::io::Result<usize> {
    remove_dead_stagings(out);
    let staging = out.join(format!("{STAGING}{}", std::process::id()));
    let written = write_into(split, &staging, format, side).and_then(|n| {
        fs_err::rename(staging.join("train"), out.join("train"))?;
        if let Err(e) = fs_err::rename(staging.join("val"), out.join("val")) {
            let _ = std::fs::remove_dir_all(out.join("train"));
            return Err(e);
        }
        Ok(n)
    });
    let _ = std::fs::remove_dir_all(&staging);
    written
}

const STAGING: &str = ".incomplete-";

/// Staging directories of `write_folder`s that were killed (their process is gone).
fn remove_dead_stagings(out: &Path) {
    for entry in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(STAGING) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn write_into(
    split: &DataSplit,
    out: &Path,
    format: ImageFormat,
    side: Option<u32>,
) -> std::io::Result<usize> {
    let mut written = 0;
    for (dir, data) in [("train", &split.train), ("val", &split.test)] {
        for class in 0..data.num_classes {
            fs_err::create_dir_all(out.join(dir).join(class_name(class, data.num_classes)))?;
        }
        for i in 0..data.len {
            let label = data.labels[i] as usize;
            let path = out
                .join(dir)
                .join(class_name(label, data.num_classes))
                .join(format!("{i:06}.{}", format.extension()));
            let mut img = to_image(data, i);
            if let Some(s) = side {
                img = img.resize_exact(s, s, FilterType::CatmullRom);
            }
            let fmt = match format {
                ImageFormat::Png => image::ImageFormat::Png,
                ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            };
            // encoded in memory and written with one checked write: `save_with_format`'s buffered
            // writer loses the error of its last flush, and with it a full disk (files of 0 bytes)
            let mut bytes = std::io::Cursor::new(Vec::new());
            img.write_to(&mut bytes, fmt).map_err(|e| {
                std::io::Error::other(format!("cannot encode {}: {e}", path.display()))
            })?;
            fs_err::write(&path, bytes.into_inner())?;
            written += 1;
        }
    }
    Ok(written)
}

/// Image `i` of an in-memory dataset (grey for one channel, RGB for three).
fn to_image(data: &Dataset, i: usize) -> DynamicImage {
    let (w, h) = (data.width as u32, data.height as u32);
    let px = data.image(i);
    if data.channels == 1 {
        DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, px.to_vec()).expect("h * w bytes"))
    } else {
        let plane = data.width * data.height;
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            let at = y as usize * data.width + x as usize;
            image::Rgb([px[at], px[plane + at], px[2 * plane + at]])
        }))
    }
}
