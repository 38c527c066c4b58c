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

impl std::str::FromStr for ImageFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "png" => Ok(ImageFormat::Png),
            "jpg" | "jpeg" => Ok(ImageFormat::Jpeg),
            _ => Err(format!("{s:?}: write png or jpeg")),
        }
    }
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
/// `None`: as stored). Returns the number of files written.
pub fn write_folder(
    split: &DataSplit,
    out: &Path,
    format: ImageFormat,
    side: Option<u32>,
) -> std::io::Result<usize> {
    let mut written = 0;
    for (dir, data) in [("train", &split.train), ("val", &split.test)] {
        for class in 0..data.num_classes {
            std::fs::create_dir_all(out.join(dir).join(class_name(class, data.num_classes)))?;
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
            img.save_with_format(&path, fmt)
                .map_err(std::io::Error::other)?;
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
