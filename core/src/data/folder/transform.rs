//! The DeiT image pipelines on decoded images: training (RandomResizedCrop with bicubic
//! resize, horizontal flip, RandAugment, normalisation, random erasing) and evaluation (resize
//! the shorter side to `size / crop_pct`, centre crop). Resizes are fast_image_resize's
//! antialiased Catmull-Rom convolution: Pillow's bicubic filter, which torchvision uses.

use std::path::Path;

use fast_image_resize::{
    images::{Image, ImageRef},
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
};
use image::RgbImage;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::rand_augment::RandAugment;

/// ImageNet's per-channel mean and standard deviation (of pixels scaled to [0, 1]): what
/// DeiT and timm normalise with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why an image file cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Image(#[from] image::ImageError),
    #[error("it declares {width}x{height} = {} pixels, more than data.max_image_pixels = {max} (a decompression bomb?); raise data.max_image_pixels if it is a real image", *width as u64 * *height as u64)]
    TooLarge { width: u32, height: u32, max: u64 },
    #[error("the image has no pixels")]
    Empty,
}

/// Reads an image file as 8-bit RGB (grey and palette images expanded, alpha dropped: PIL's
/// `convert("RGB")`). The format is taken from the content, not the extension. An image
/// whose header declares more than `max_pixels` pixels is refused before anything is
/// decoded, whatever its colour type.
pub fn decode(path: &Path, max_pixels: u64) -> Result<RgbImage, DecodeError> {
    decode_from(image::ImageReader::open(path)?, max_pixels)
}

/// [`decode`] of a file's contents (the fuzz target's way in).
pub fn decode_bytes(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    decode_from(
        image::ImageReader::new(std::io::Cursor::new(bytes)),
        max_pixels,
    )
}

fn decode_from<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
    max_pixels: u64,
) -> Result<RgbImage, DecodeError> {
    use image::ImageDecoder;
    let decoder = reader.with_guessed_format()?.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max: max_pixels,
        });
    }
    let img = image::DynamicImage::from_decoder(decoder)?;
    if img.width() == 0 || img.height() == 0 {
        return Err(DecodeError::Empty);
    }
    Ok(match img {
        image::DynamicImage::ImageRgb8(rgb) => rgb,
        // image's own conversion goes through its colour-space machinery, a sixth of the
        // loader's time on grey JPEGs; grey to RGB is a copy per channel
        image::DynamicImage::ImageLuma8(grey) => {
            let (w, h) = grey.dimensions();
            let rgb = grey
                .into_raw()
                .into_iter()
                .flat_map(|v| [v, v, v])
                .collect();
            RgbImage::from_raw(w, h, rgb).expect("3 bytes per pixel")
        }
        other => other.to_rgb8(),
    })
}

/// Per-channel normalisation into CHW floats.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    /// Writes `img` (HWC u8) normalised into `out` (CHW).
    pub fn write(&self, img: &RgbImage, out: &mut [f32]) {
        let (w, h) = (img.width() as usize, img.height() as usize);
        debug_assert_eq!(out.len(), 3 * w * h);
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * w * h + i] = px[c] as f32 * scale[c] - shift[c];
            }
        }
    }
}

/// The training pipeline (timm's `create_transform(is_training=True)` as DeiT configures it).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTransform {
    pub size: usize,
    /// RandomResizedCrop's area fraction and aspect-ratio ranges.
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub hflip: bool,
    pub rand_augment: Option<RandAugment>,
    /// Probability of one random-erasing box of per-pixel normal noise (timm's `mode="pixel"`).
    pub erase_prob: f64,
    pub normalize: Normalize,
}

/// The evaluation pipeline: resize the shorter side to `size / crop_pct`, crop the centre.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalTransform {
    pub size: usize,
    pub crop_pct: f64,
    pub normalize: Normalize,
}

fn bicubic() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
}

/// `src` cropped to (left, top, w, h) and resized to `out_w` x `out_h`, bicubic (torchvision's
/// `resized_crop` on a PIL image).
pub fn resize(
    resizer: &mut Resizer,
    src: &RgbImage,
    (left, top, w, h): (u32, u32, u32, u32),
    (out_w, out_h): (u32, u32),
) -> RgbImage {
    // Cropped first, as torchvision does: the filter must not reach pixels outside the box
    // (fast_image_resize's own crop option would read them, and the box's border would differ)
    let cropped;
    let src = if (left, top, w, h) == (0, 0, src.width(), src.height()) {
        src
    } else {
        cropped = image::imageops::crop_imm(src, left, top, w, h).to_image();
        &cropped
    };
    // Pillow resizes rows first, then columns, rounding to 8 bits between the passes;
    // fast_image_resize does columns first on 8-bit images, which differs by a few levels at
    // hard edges. One pass per call keeps Pillow's order (and a pass whose size does not
    // change is skipped, as Pillow skips it).
    let rows = (out_w != src.width()).then(|| one_pass(resizer, src, (out_w, src.height())));
    if out_h == src.height() {
        return rows.unwrap_or_else(|| src.clone());
    }
    one_pass(resizer, rows.as_ref().unwrap_or(src), (out_w, out_h))
}

fn one_pass(resizer: &mut Resizer, src: &RgbImage, (out_w, out_h): (u32, u32)) -> RgbImage {
    let view = ImageRef::new(src.width(), src.height(), src.as_raw(), PixelType::U8x3)
        .expect("an RgbImage's buffer is width * height * 3 bytes");
    let mut dst = Image::new(out_w, out_h, PixelType::U8x3);
    resizer
        .resize(&view, &mut dst, &bicubic())
        .expect("same pixel type");
    RgbImage::from_raw(out_w, out_h, dst.into_vec()).expect("out_w * out_h * 3 bytes")
}

impl TrainTransform {
    /// One augmented image, normalised, into `out` (3 x size x size, CHW).
    pub fn apply(
        &self,
        resizer: &mut Resizer,
        img: &RgbImage,
        rng: &mut impl Rng,
        out: &mut [f32],
    ) {
        let crop = random_resized_crop(img.width(), img.height(), self.scale, self.ratio, rng);
        let s = self.size as u32;
        let mut x = resize(resizer, img, crop, (s, s));
        if self.hflip && rng.gen_bool(0.5) {
            image::imageops::flip_horizontal_in_place(&mut x);
        }
        if let Some(ra) = &self.rand_augment {
            x = ra.apply(x, rng);
        }
        self.normalize.write(&x, out);
        if self.erase_prob > 0.0 && rng.gen_bool(self.erase_prob) {
            random_erase(out, (3, self.size, self.size), rng);
        }
    }
}

impl EvalTransform {
    /// The shorter side the image is resized to before the centre crop.
    pub fn resize_to(&self) -> u32 {
        (self.size as f64 / self.crop_pct).floor() as u32
    }

    /// One evaluation image, normalised, into `out` (3 x size x size, CHW).
    pub fn apply(&self, resizer: &mut Resizer, img: &RgbImage, out: &mut [f32]) {
        let x = self.crop(resizer, img);
        self.normalize.write(&x, out);
    }

    /// The resized and centre-cropped image, before normalisation (torchvision's `Resize`
    /// then `CenterCrop`).
    pub fn crop(&self, resizer: &mut Resizer, img: &RgbImage) -> RgbImage {
        let (w, h) = (img.width(), img.height());
        let short = self.resize_to();
        // torchvision: the longer side is int(short * long / short_side)
        let (nw, nh) = if w <= h {
            (short, (short as u64 * h as u64 / w as u64) as u32)
        } else {
            ((short as u64 * w as u64 / h as u64) as u32, short)
        };
        let resized = resize(resizer, img, (0, 0, w, h), (nw, nh));
        let s = self.size as u32;
        // With crop_pct <= 1 (RunConfig::validate) the shorter side is at least the crop, so
        // the crop is inside the image (torchvision pads only for crop_pct > 1)
        assert!(
            nw >= s && nh >= s,
            "crop_pct {} > 1: the crop would leave the image",
            self.crop_pct
        );
        // CenterCrop: int(round((h - s) / 2)), Python's round (half to even: 4.5 -> 4)
        let top = ((nh - s) as f64 / 2.0).round_ties_even() as u32;
        let left = ((nw - s) as f64 / 2.0).round_ties_even() as u32;
        image::imageops::crop_imm(&resized, left, top, s, s).to_image()
    }
}

/// torchvision's `RandomResizedCrop.get_params`: (left, top, width, height) of a box with a
/// random share `scale` of the area and a log-uniform aspect ratio in `ratio`, ten tries, then
/// the centre crop of the clamped ratio.
pub fn random_resized_crop(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> (u32, u32, u32, u32) {
    let (w, h) = (width as f64, height as f64);
    let area = w * h;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(lr0..=lr1).exp();
        let cw = (target * aspect).sqrt().round();
        let ch = (target / aspect).sqrt().round();
        if cw > 0.0 && ch > 0.0 && cw <= w && ch <= h {
            let (cw, ch) = (cw as u32, ch as u32);
            let top = rng.gen_range(0..=height - ch);
            let left = rng.gen_range(0..=width - cw);
            return (left, top, cw, ch);
        }
    }
    let in_ratio = w / h;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, (w / ratio.0).round())
    } else if in_ratio > ratio.1 {
        ((h * ratio.1).round(), h)
    } else {
        (w, h)
    };
    let (cw, ch) = ((cw as u32).clamp(1, width), (ch as u32).clamp(1, height));
    ((width - cw) / 2, (height - ch) / 2, cw, ch)
}

/// timm's `RandomErasing(mode="pixel", max_count=1)` on a normalised CHW image: a box of
/// 2%..1/3 of the area, aspect ratio log-uniform in 0.3..1/0.3, filled with standard normal
/// noise per pixel and channel; ten tries to fit one.
/// timm's `RandomErasing(mode="pixel")` on a normalised (c, h, w) image: one box of 2% to 1/3
/// of the area, aspect ratio log-uniform in [0.3, 1/0.3], filled with per-pixel normal noise;
/// ten tries to fit it, else the image is left as it was.
pub fn random_erase(
    img: &mut [f32],
    (c, height, width): (usize, usize, usize),
    rng: &mut impl Rng,
) {
    let area = (height * width) as f64;
    let (lr0, lr1) = (0.3f64.ln(), (1.0f64 / 0.3).ln());
    for _ in 0..10 {
        let target = rng.gen_range(0.02..=1.0 / 3.0) * area;
        let aspect = rng.gen_range(lr0..=lr1).exp();
        let h = (target * aspect).sqrt().round() as usize;
        let w = (target / aspect).sqrt().round() as usize;
        if w < width && h < height {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            for ch in 0..c {
                for y in top..top + h {
                    for x in left..left + w {
                        img[ch * height * width + y * width + x] = StandardNormal.sample(rng);
                    }
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A PNG that declares `side` x `side` pixels of `colour` type at `depth` bits, with a few
    /// bytes of compressed data (the size of a bomb's file is not its decoded size).
    fn declared_png(side: u32, colour: u8, depth: u8) -> Vec<u8> {
        use std::io::Write;
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend((data.len() as u32).to_be_bytes());
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            out.extend(kind);
            out.extend(data);
            out.extend(crc.sum().to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(side.to_be_bytes());
        ihdr.extend(side.to_be_bytes());
        ihdr.extend([depth, colour, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        if colour == 3 {
            chunk(&mut out, b"PLTE", &[0, 0, 0, 255, 255, 255]);
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0u8; 4096]).unwrap();
        chunk(&mut out, b"IDAT", &z.finish().unwrap());
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn images_declaring_more_pixels_than_the_limit_are_refused_before_decoding_in_every_colour_type(
    ) {
        let tmp = tempfile::tempdir().unwrap();
        // grey, RGB, palette, grey+alpha, RGBA at 8 bits; grey and RGBA at 16
        for (colour, depth) in [(0, 8), (2, 8), (3, 8), (4, 8), (6, 8), (0, 16), (6, 16)] {
            let path = tmp.path().join(format!("bomb-{colour}-{depth}.png"));
            std::fs::write(&path, declared_png(20_000, colour, depth)).unwrap();
            let e = decode(&path, 89_478_485).unwrap_err();
            assert!(
                matches!(e, DecodeError::TooLarge { width: 20_000, .. }),
                "{e}"
            );
            let e = e.to_string();
            assert!(
                e.contains("20000x20000 = 400000000 pixels") && e.contains("data.max_image_pixels"),
                "colour {colour} depth {depth}: {e}"
            );
        }
        // a small image under the same limit decodes
        let path = tmp.path().join("small.png");
        image::RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3]))
            .save(&path)
            .unwrap();
        assert_eq!(decode(&path, 6).unwrap().dimensions(), (3, 2));
        assert!(decode(&path, 5).is_err());
    }

    #[test]
    fn random_resized_crops_stay_inside_and_follow_the_ranges() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for (w, h) in [(500, 375), (28, 28), (1, 300), (640, 2)] {
            for _ in 0..200 {
                let (l, t, cw, ch) =
                    random_resized_crop(w, h, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), &mut rng);
                assert!(
                    cw >= 1 && ch >= 1 && l + cw <= w && t + ch <= h,
                    "{w}x{h}: {l},{t},{cw},{ch}"
                );
            }
        }
        // a full-area, square-only range on a square image is the whole image
        assert_eq!(
            random_resized_crop(64, 64, (1.0, 1.0), (1.0, 1.0), &mut rng),
            (0, 0, 64, 64)
        );
    }

    #[test]
    fn erasing_changes_one_box_only() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let size = 32;
        let mut img = vec![7.0f32; 3 * size * size];
        random_erase(&mut img, (3, size, size), &mut rng);
        let changed: Vec<usize> = (0..size * size).filter(|&i| img[i] != 7.0).collect();
        let n = changed.len() as f64 / (size * size) as f64;
        assert!((0.01..=0.34).contains(&n), "{n}");
        // the same pixels in every channel
        for &i in &changed {
            assert!(img[size * size + i] != 7.0 && img[2 * size * size + i] != 7.0);
        }
        let (ys, xs): (Vec<usize>, Vec<usize>) =
            changed.iter().map(|i| (i / size, i % size)).unzip();
        let box_area = (ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1)
            * (xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1);
        assert_eq!(box_area, changed.len(), "a rectangle");
    }

    #[test]
    fn eval_crop_keeps_a_centred_square() {
        // a 40x20 image, left half black and right half white; crop_pct 1: resize short side
        // to 20, crop 20x20 from the centre: half black, half white
        let img = RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let t = EvalTransform {
            size: 20,
            crop_pct: 1.0,
            normalize: Normalize {
                mean: [0.0; 3],
                std: [1.0; 3],
            },
        };
        let out = t.crop(&mut Resizer::new(), &img);
        assert_eq!((out.width(), out.height()), (20, 20));
        assert_eq!(out.get_pixel(0, 10).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(19, 10).0, [255, 255, 255]);
        let mut chw = vec![0f32; 3 * 20 * 20];
        t.apply(&mut Resizer::new(), &img, &mut chw);
        assert_eq!((chw[0], chw[19]), (0.0, 1.0));
    }
}
