//! RandAugment as timm implements it for DeiT (`rand-m9-mstd0.5-inc1`): each image gets
//! `num_ops` operations drawn with replacement from fifteen, each applied with probability 0.5
//! at a magnitude drawn from N(m, mstd) clipped to [0, 10]. The operations follow Pillow's
//! (`ImageOps`, `ImageEnhance`, affine transforms filled with the ImageNet mean pixel).

use image::{Rgb, RgbImage};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// The operations' order and names as in timm's `_RAND_TRANSFORMS` /
/// `_RAND_INCREASING_TRANSFORMS`.
const OPS: [Op; 15] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::SolarizeAdd,
    Op::Color,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
}

/// The fill of pixels that affine operations move in from outside: timm's ImageNet mean.
const FILL: Rgb<u8> = Rgb([124, 116, 104]);

#[derive(Clone, Debug, PartialEq)]
pub struct RandAugment {
    pub num_ops: usize,
    pub magnitude: f64,
    pub magnitude_std: f64,
    /// timm's `inc1`: the operations whose strength grows with the magnitude in both
    /// directions (posterize keeps fewer bits, solarize a lower threshold, enhancements move
    /// further from 1).
    pub increasing: bool,
}

/// A RandAugment spec that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RandAugmentError {
    #[error("{0:?} is not a RandAugment spec: write it as timm does, e.g. \"rand-m9-mstd0.5-inc1\" (or \"\" for none)")]
    NotRand(String),
    #[error("{spec:?}: cannot read {part:?}; the keys are m<magnitude 0-10>, mstd<std>, inc<0|1>, n<operations>")]
    Part { spec: String, part: String },
    #[error("{0:?}: the magnitude is 0..10 and its std at least 0")]
    Magnitude(String),
}

impl RandAugment {
    /// Parses timm's config string: `rand-m9-mstd0.5-inc1` (also `-n2` for the number of
    /// operations). Other keys timm knows (`w`, `mmax`, `p`) are refused rather than ignored.
    pub fn parse(spec: &str) -> Result<RandAugment, RandAugmentError> {
        let mut parts = spec.split('-');
        if parts.next() != Some("rand") {
            return Err(RandAugmentError::NotRand(spec.into()));
        }
        let mut ra = RandAugment {
            num_ops: 2,
            magnitude: 10.0,
            magnitude_std: 0.0,
            increasing: false,
        };
        for part in parts {
            let bad = || RandAugmentError::Part {
                spec: spec.into(),
                part: part.into(),
            };
            let number = |key: &str| part[key.len()..].parse::<f64>().map_err(|_| bad());
            if part.starts_with("mstd") {
                ra.magnitude_std = number("mstd")?;
            } else if part.starts_with("inc") {
                ra.increasing = number("inc")? != 0.0;
            } else if part.starts_with('m') {
                ra.magnitude = number("m")?;
            } else if part.starts_with('n') {
                ra.num_ops = number("n")? as usize;
            } else {
                return Err(bad());
            }
        }
        if !(0.0..=10.0).contains(&ra.magnitude) || ra.magnitude_std < 0.0 {
            return Err(RandAugmentError::Magnitude(spec.into()));
        }
        Ok(ra)
    }

    pub fn apply(&self, mut img: RgbImage, rng: &mut impl Rng) -> RgbImage {
        for _ in 0..self.num_ops {
            let op = OPS[rng.gen_range(0..OPS.len())];
            if rng.gen::<f64>() > 0.5 {
                continue;
            }
            let mut m = self.magnitude;
            if self.magnitude_std > 0.0 {
                m = Normal::new(m, self.magnitude_std)
                    .expect("std > 0")
                    .sample(rng);
            }
            let level = m.clamp(0.0, 10.0) / 10.0;
            img = self.op(op, img, level, rng);
        }
        img
    }

    fn op(&self, op: Op, img: RgbImage, level: f64, rng: &mut impl Rng) -> RgbImage {
        let mut sign = || if rng.gen_bool(0.5) { -1.0 } else { 1.0 };
        let enhance = |sign: f64| {
            if self.increasing {
                1.0 + sign * level * 0.9
            } else {
                level * 1.8 + 0.1
            }
        };
        match op {
            Op::AutoContrast => per_channel_lut(img, autocontrast_lut),
            Op::Equalize => per_channel_lut(img, equalize_lut),
            Op::Invert => lut(img, |v| 255 - v),
            Op::Rotate => rotate(&img, sign() * level * 30.0),
            Op::Posterize => {
                let bits = (level * 4.0) as u32;
                let bits = if self.increasing { 4 - bits } else { bits };
                let mask = !((1u16 << (8 - bits)) - 1) as u8;
                lut(img, |v| v & mask)
            }
            Op::Solarize => {
                let t = (level * 256.0) as u16;
                let t = if self.increasing { 256 - t } else { t };
                lut(img, |v| if v as u16 >= t { 255 - v } else { v })
            }
            Op::SolarizeAdd => {
                let add = (level * 110.0) as u16;
                lut(img, |v| {
                    if v < 128 {
                        (v as u16 + add).min(255) as u8
                    } else {
                        v
                    }
                })
            }
            Op::Color => {
                let f = enhance(sign());
                blend_with(img, f, |px| [luma(px); 3])
            }
            Op::Contrast => {
                let f = enhance(sign());
                let mean = {
                    let sum: u64 = img.pixels().map(|p| luma(p) as u64).sum();
                    (sum as f64 / (img.width() * img.height()) as f64 + 0.5) as u8
                };
                blend_with(img, f, |_| [mean; 3])
            }
            Op::Brightness => {
                let f = enhance(sign());
                blend_with(img, f, |_| [0; 3])
            }
            Op::Sharpness => {
                let f = enhance(sign());
                let smooth = smooth(&img);
                let mut out = img.clone();
                for (o, (p, s)) in out.pixels_mut().zip(img.pixels().zip(smooth.pixels())) {
                    for c in 0..3 {
                        o.0[c] = mix(s.0[c], p.0[c], f);
                    }
                }
                out
            }
            Op::ShearX => affine(&img, [1.0, sign() * level * 0.3, 0.0, 0.0, 1.0, 0.0]),
            Op::ShearY => affine(&img, [1.0, 0.0, 0.0, sign() * level * 0.3, 1.0, 0.0]),
            Op::TranslateX => {
                let dx = sign() * level * 0.45 * img.width() as f64;
                affine(&img, [1.0, 0.0, dx, 0.0, 1.0, 0.0])
            }
            Op::TranslateY => {
                let dy = sign() * level * 0.45 * img.height() as f64;
                affine(&img, [1.0, 0.0, 0.0, 0.0, 1.0, dy])
            }
        }
    }
}

/// Pillow's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point.
fn luma(p: &Rgb<u8>) -> u8 {
    ((p.0[0] as u32 * 19595 + p.0[1] as u32 * 38470 + p.0[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `Image.blend(degenerate, image, f)`, clipped.
fn mix(degenerate: u8, value: u8, f: f64) -> u8 {
    (degenerate as f64 + f * (value as f64 - degenerate as f64)).clamp(0.0, 255.0) as u8
}

/// Each pixel blended with its degenerate version (what `degenerate` makes of it).
fn blend_with(mut img: RgbImage, f: f64, degenerate: impl Fn(&Rgb<u8>) -> [u8; 3]) -> RgbImage {
    for p in img.pixels_mut() {
        let d = degenerate(p);
        for c in 0..3 {
            p.0[c] = mix(d[c], p.0[c], f);
        }
    }
    img
}

fn lut(mut img: RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    let table: [u8; 256] = std::array::from_fn(|v| f(v as u8));
    for v in img.iter_mut() {
        *v = table[*v as usize];
    }
    img
}

/// A table per channel, made from that channel's histogram.
fn per_channel_lut(mut img: RgbImage, make: fn(&[u64; 256]) -> [u8; 256]) -> RgbImage {
    let mut hist = [[0u64; 256]; 3];
    for p in img.pixels() {
        for c in 0..3 {
            hist[c][p.0[c] as usize] += 1;
        }
    }
    let tables = hist.map(|h| make(&h));
    for p in img.pixels_mut() {
        for c in 0..3 {
            p.0[c] = tables[c][p.0[c] as usize];
        }
    }
    img
}

/// `ImageOps.autocontrast` (no cutoff): the channel's range stretched to 0..255.
fn autocontrast_lut(h: &[u64; 256]) -> [u8; 256] {
    let lo = h.iter().position(|&n| n > 0).unwrap_or(0);
    let hi = h.iter().rposition(|&n| n > 0).unwrap_or(255);
    if hi <= lo {
        return std::array::from_fn(|v| v as u8);
    }
    let scale = 255.0 / (hi - lo) as f64;
    let offset = -(lo as f64) * scale;
    std::array::from_fn(|v| (v as f64 * scale + offset).clamp(0.0, 255.0) as u8)
}

/// `ImageOps.equalize`: the channel's cumulative histogram as the mapping.
fn equalize_lut(h: &[u64; 256]) -> [u8; 256] {
    let identity = std::array::from_fn(|v| v as u8);
    let used: Vec<u64> = h.iter().copied().filter(|&n| n > 0).collect();
    if used.len() <= 1 {
        return identity;
    }
    let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 255;
    if step == 0 {
        return identity;
    }
    let mut n = step / 2;
    std::array::from_fn(|v| {
        let out = (n / step).min(255) as u8;
        n += h[v];
        out
    })
}

/// `ImageFilter.SMOOTH` (3x3, centre 5, others 1, over 13); the border keeps its pixels.
fn smooth(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    if w < 3 || h < 3 {
        return out;
    }
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut acc = [0u32; 3];
            for dy in 0..3 {
                for dx in 0..3 {
                    let weight = if dx == 1 && dy == 1 { 5 } else { 1 };
                    let p = img.get_pixel(x + dx - 1, y + dy - 1);
                    for c in 0..3 {
                        acc[c] += weight * p.0[c] as u32;
                    }
                }
            }
            out.put_pixel(x, y, Rgb(acc.map(|a| ((a as f64 / 13.0).round()) as u8)));
        }
    }
    out
}

/// Counter-clockwise by `degrees` about the centre, same size (`Image.rotate`).
fn rotate(img: &RgbImage, degrees: f64) -> RgbImage {
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = (img.width() as f64 / 2.0, img.height() as f64 / 2.0);
    affine(
        img,
        [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy],
    )
}

/// `Image.transform(AFFINE, (a, b, c, d, e, f))`: output pixel (x, y) samples the input at
/// (a x + b y + c, d x + e y + f) (pixel centres), bilinear, [`FILL`] outside.
fn affine(img: &RgbImage, [a, b, c, d, e, f]: [f64; 6]) -> RgbImage {
    let (w, h) = img.dimensions();
    let (wi, hi) = (w as i64, h as i64);
    let src = img.as_raw();
    let mut out = vec![0u8; src.len()];
    for y in 0..h {
        let py = y as f64 + 0.5;
        for x in 0..w {
            let px = x as f64 + 0.5;
            let sx = a * px + b * py + c - 0.5;
            let sy = d * px + e * py + f - 0.5;
            let o = (y * w + x) as usize * 3;
            if sx < -0.5 || sy < -0.5 || sx > w as f64 - 0.5 || sy > h as f64 - 0.5 {
                out[o..o + 3].copy_from_slice(&FILL.0);
                continue;
            }
            let (x0, y0) = (sx.floor(), sy.floor());
            let (tx, ty) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let at =
                |xx: i64, yy: i64| (yy.clamp(0, hi - 1) * wi + xx.clamp(0, wi - 1)) as usize * 3;
            let (p00, p10, p01, p11) = (
                at(x0, y0),
                at(x0 + 1, y0),
                at(x0, y0 + 1),
                at(x0 + 1, y0 + 1),
            );
            for k in 0..3 {
                let top = src[p00 + k] as f64 * (1.0 - tx) + src[p10 + k] as f64 * tx;
                let bottom = src[p01 + k] as f64 * (1.0 - tx) + src[p11 + k] as f64 * tx;
                // non-negative: adding a half and truncating rounds (and skips libm's round)
                out[o + k] = ((top * (1.0 - ty) + bottom * ty) + 0.5).min(255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(w, h, out).expect("the input's size")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(16, 12, |x, y| {
            Rgb([(x * 10) as u8 + 40, (y * 12) as u8 + 30, 90])
        })
    }

    #[test]
    fn parses_timm_specs_and_refuses_others() {
        let ra = RandAugment::parse("rand-m9-mstd0.5-inc1").unwrap();
        assert_eq!(
            ra,
            RandAugment {
                num_ops: 2,
                magnitude: 9.0,
                magnitude_std: 0.5,
                increasing: true
            }
        );
        assert_eq!(RandAugment::parse("rand-n3-m5").unwrap().num_ops, 3);
        let part = |spec: &str, part: &str| RandAugmentError::Part {
            spec: spec.into(),
            part: part.into(),
        };
        for (bad, why) in [
            ("augmix-m5", RandAugmentError::NotRand("augmix-m5".into())),
            ("rand-m11", RandAugmentError::Magnitude("rand-m11".into())),
            ("rand-w0", part("rand-w0", "w0")),
            ("rand-mx", part("rand-mx", "mx")),
        ] {
            let e = RandAugment::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
            assert_eq!(e, why);
        }
    }

    #[test]
    fn pixel_operations_match_pillow() {
        let img = gradient();
        // equalize of a flat histogram keeps an even spread; autocontrast stretches to 0..255
        let ac = per_channel_lut(img.clone(), autocontrast_lut);
        let reds: Vec<u8> = ac.pixels().map(|p| p.0[0]).collect();
        assert_eq!(
            (reds.iter().min(), reds.iter().max()),
            (Some(&0), Some(&255))
        );
        // a single-valued channel is left alone by both
        assert!(ac.pixels().all(|p| p.0[2] == 90));
        let eq = per_channel_lut(img.clone(), equalize_lut);
        assert!(eq.pixels().all(|p| p.0[2] == 90));
        // Pillow 13: ImageOps.equalize of 300 x 0, 500 x 1, 100 x 2, 300 x 200 maps them to
        // 0, 100, 255, 255; autocontrast of 10, 20, 100 gives 0, 28, 255
        let mut h = [0u64; 256];
        (h[0], h[1], h[2], h[200]) = (300, 500, 100, 300);
        let t = equalize_lut(&h);
        assert_eq!([t[0], t[1], t[2], t[200]], [0, 100, 255, 255]);
        let mut h = [0u64; 256];
        (h[10], h[20], h[100]) = (5, 5, 5);
        let t = autocontrast_lut(&h);
        assert_eq!([t[10], t[20], t[100]], [0, 28, 255]);
        // luma of pure colours as Pillow's convert("L"): 76, 150, 29
        assert_eq!(
            [
                luma(&Rgb([255, 0, 0])),
                luma(&Rgb([0, 255, 0])),
                luma(&Rgb([0, 0, 255]))
            ],
            [76, 150, 29]
        );
    }

    #[test]
    fn geometry_moves_pixels_the_right_way() {
        let img = gradient();
        // no rotation and identity affine change nothing
        assert_eq!(rotate(&img, 0.0), img);
        // translating by +3 pixels samples 3 to the right: the content moves left; the right
        // edge is filled with the mean pixel
        let t = affine(&img, [1.0, 0.0, 3.0, 0.0, 1.0, 0.0]);
        assert_eq!(t.get_pixel(0, 5), img.get_pixel(3, 5));
        assert_eq!(*t.get_pixel(15, 5), FILL);
        // a 90 degree turn of a square image counter-clockwise: the top-right corner goes
        // to the top-left
        let sq = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 0]));
        let r = rotate(&sq, 90.0);
        assert_eq!(r.get_pixel(0, 0), sq.get_pixel(7, 0));
        assert_eq!(r.get_pixel(0, 7), sq.get_pixel(0, 0));
    }

    #[test]
    fn the_same_stream_gives_the_same_image() {
        let ra = RandAugment::parse("rand-m9-mstd0.5-inc1").unwrap();
        let run = |seed| {
            ra.apply(
                gradient(),
                &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            )
        };
        assert_eq!(run(5), run(5));
        assert!(
            (0..8).any(|s| run(s) != gradient()),
            "some operation changes the image"
        );
    }
}
