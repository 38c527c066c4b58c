//! Turning dataset samples into model inputs: random crop and flip, normalisation, mixup /
//! cutmix with label smoothing (timm's `Mixup` in batch mode), and patchification.

use std::sync::Arc;

use crate::config::AugmentSection;
use crate::data::folder::{LoadedBatch, LoaderSettings, Pipeline};
use crate::data::Dataset;
use crate::device::{tensor_from_slice, Act, Dev, Rows};
use crate::model::VitConfig;
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

/// A batch ready for the model: patches (batch, patches, C*p*p) and soft targets (batch, classes).
pub struct Batch {
    pub patches: Act<NoneTape>,
    pub targets: Rows<NoneTape>,
    pub labels: Vec<usize>,
}

pub struct BatchMaker<'a> {
    pub dev: &'a Dev,
    pub vit: &'a VitConfig,
    pub augment: &'a AugmentSection,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Image folders: the DeiT pipelines their images are decoded through.
    pub folder: Option<FolderPipelines>,
}

/// How an image folder's images become model inputs.
#[derive(Clone, Debug)]
pub struct FolderPipelines {
    pub train: Arc<Pipeline>,
    pub eval: Arc<Pipeline>,
    pub loader: LoaderSettings,
}

impl BatchMaker<'_> {
    /// A training batch: augmented, mixed, with smoothed soft targets.
    pub fn train(&self, data: &Dataset, indices: &[usize], rng: &mut ChaCha8Rng) -> Batch {
        let (c, h, w) = (data.channels, data.height, data.width);
        let n = indices.len();
        let mut images = vec![0f32; n * c * h * w];
        for (k, &i) in indices.iter().enumerate() {
            let pad = self.augment.crop_padding as isize;
            let (oy, ox) = if pad > 0 {
                (rng.gen_range(-pad..=pad), rng.gen_range(-pad..=pad))
            } else {
                (0, 0)
            };
            let flip = self.augment.hflip && rng.gen_bool(0.5);
            self.write_image(
                data.image(i),
                &mut images[k * c * h * w..(k + 1) * c * h * w],
                (c, h, w),
                oy,
                ox,
                flip,
            );
        }
        let labels: Vec<usize> = indices.iter().map(|&i| data.labels[i] as usize).collect();
        let lam = self.mix(&mut images, (n, c, h, w), rng);
        let targets = self.soft_targets(&labels, lam, self.augment.label_smoothing);
        self.finish(images, targets, labels, (n, c, h, w))
    }

    /// A training batch of images an image folder's loader decoded and augmented: mixed, with
    /// smoothed soft targets.
    pub fn train_loaded(&self, loaded: LoadedBatch, rng: &mut ChaCha8Rng) -> Batch {
        let dims = self.loaded_dims(&loaded);
        let mut images = loaded.images;
        let lam = self.mix(&mut images, dims, rng);
        let targets = self.soft_targets(&loaded.labels, lam, self.augment.label_smoothing);
        self.finish(images, targets, loaded.labels, dims)
    }

    /// An evaluation batch of images an image folder's loader decoded.
    pub fn eval_loaded(&self, loaded: LoadedBatch) -> Batch {
        let dims = self.loaded_dims(&loaded);
        let targets = self.soft_targets(&loaded.labels, 1.0, 0.0);
        self.finish(loaded.images, targets, loaded.labels, dims)
    }

    fn loaded_dims(&self, loaded: &LoadedBatch) -> (usize, usize, usize, usize) {
        let s = self.vit.image_size;
        (loaded.labels.len(), 3, s, s)
    }

    /// An evaluation batch: no augmentation, one-hot targets.
    pub fn eval(&self, data: &Dataset, indices: &[usize]) -> Batch {
        let (c, h, w) = (data.channels, data.height, data.width);
        let n = indices.len();
        let images = self.eval_images(data, indices);
        let labels: Vec<usize> = indices.iter().map(|&i| data.labels[i] as usize).collect();
        let targets = self.soft_targets(&labels, 1.0, 0.0);
        self.finish(images, targets, labels, (n, c, h, w))
    }

    /// The normalised images of an evaluation batch, `(n, c, h, w)` row-major: what a PyTorch
    /// model of the same weights takes as input.
    pub fn eval_images(&self, data: &Dataset, indices: &[usize]) -> Vec<f32> {
        let (c, h, w) = (data.channels, data.height, data.width);
        let n = indices.len();
        let mut images = vec![0f32; n * c * h * w];
        for (k, &i) in indices.iter().enumerate() {
            self.write_image(
                data.image(i),
                &mut images[k * c * h * w..(k + 1) * c * h * w],
                (c, h, w),
                0,
                0,
                false,
            );
        }
        images
    }

    /// Normalised pixels of one image, shifted by (oy, ox) with zero padding (torchvision's
    /// RandomCrop pads the raw image with zeros) and optionally mirrored.
    fn write_image(
        &self,
        src: &[u8],
        dst: &mut [f32],
        (c, h, w): (usize, usize, usize),
        oy: isize,
        ox: isize,
        flip: bool,
    ) {
        for ch in 0..c {
            let (m, s) = (self.mean[ch], self.std[ch]);
            for y in 0..h {
                for x in 0..w {
                    let sx = if flip { w - 1 - x } else { x } as isize + ox;
                    let sy = y as isize + oy;
                    let raw = if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                        src[ch * h * w + sy as usize * w + sx as usize] as f32 / 255.0
                    } else {
                        0.0
                    };
                    dst[ch * h * w + y * w + x] = (raw - m) / s;
                }
            }
        }
    }

    /// Mixes each image with its mirror in the batch (image n-1-k), returning the weight `lam`
    /// of the original label. Mixup blends whole images; CutMix pastes a box, and `lam` becomes
    /// the exact area kept.
    fn mix(
        &self,
        images: &mut [f32],
        (n, c, h, w): (usize, usize, usize, usize),
        rng: &mut ChaCha8Rng,
    ) -> f64 {
        let a = self.augment;
        let (mixup, cutmix) = (a.mixup_alpha > 0.0, a.cutmix_alpha > 0.0);
        if n < 2 || !(mixup || cutmix) || !rng.gen_bool(a.mix_prob) {
            return 1.0;
        }
        let use_cutmix = cutmix && (!mixup || rng.gen_bool(a.switch_prob));
        let alpha = if use_cutmix {
            a.cutmix_alpha
        } else {
            a.mixup_alpha
        };
        let lam: f64 = Beta::new(alpha, alpha).expect("alpha > 0").sample(rng);
        let original = images.to_vec();
        let size = c * h * w;
        if !use_cutmix {
            for k in 0..n {
                let other = &original[(n - 1 - k) * size..(n - k) * size];
                for (p, q) in images[k * size..(k + 1) * size].iter_mut().zip(other) {
                    *p = *p * lam as f32 + *q * (1.0 - lam) as f32;
                }
            }
            return lam;
        }
        let cut = (1.0 - lam).sqrt();
        let (ch, cw) = ((h as f64 * cut) as usize, (w as f64 * cut) as usize);
        let (cy, cx) = (rng.gen_range(0..h), rng.gen_range(0..w));
        let (y0, y1) = (cy.saturating_sub(ch / 2), (cy + ch / 2).min(h));
        let (x0, x1) = (cx.saturating_sub(cw / 2), (cx + cw / 2).min(w));
        for k in 0..n {
            let o = (n - 1 - k) * size;
            for chn in 0..c {
                for y in y0..y1 {
                    for x in x0..x1 {
                        let at = chn * h * w + y * w + x;
                        images[k * size + at] = original[o + at];
                    }
                }
            }
        }
        1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (h * w) as f64
    }

    fn soft_targets(&self, labels: &[usize], lam: f64, smoothing: f64) -> Vec<f32> {
        let (n, classes) = (labels.len(), self.vit.num_classes);
        let off = smoothing / classes as f64;
        let on = 1.0 - smoothing + off;
        let mut t = vec![0f32; n * classes];
        for k in 0..n {
            for (label, weight) in [(labels[k], lam), (labels[n - 1 - k], 1.0 - lam)] {
                for class in 0..classes {
                    let v = if class == label { on } else { off };
                    t[k * classes + class] += (v * weight) as f32;
                }
            }
        }
        t
    }

    fn finish(
        &self,
        images: Vec<f32>,
        targets: Vec<f32>,
        labels: Vec<usize>,
        (n, c, h, w): (usize, usize, usize, usize),
    ) -> Batch {
        let patches = patchify(&images, (n, c, h, w), self.vit.patch_size);
        let (np, pd) = (self.vit.num_patches(), self.vit.patch_dim());
        Batch {
            patches: tensor_from_slice(self.dev, &patches, (n, np, pd)),
            targets: tensor_from_slice(self.dev, &targets, (n, self.vit.num_classes)),
            labels,
        }
    }
}

/// (n, c, h, w) images to (n, patches, c*p*p), patches in row-major grid order and each patch
/// flattened as (channel, row, column): the layout of a flattened Conv2d kernel.
pub fn patchify(images: &[f32], (n, c, h, w): (usize, usize, usize, usize), p: usize) -> Vec<f32> {
    let (gh, gw) = (h / p, w / p);
    let mut out = Vec::with_capacity(n * c * h * w);
    for k in 0..n {
        for gy in 0..gh {
            for gx in 0..gw {
                for ch in 0..c {
                    for y in 0..p {
                        let row = k * c * h * w + ch * h * w + (gy * p + y) * w + gx * p;
                        out.extend_from_slice(&images[row..row + p]);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_matches_conv_layout() {
        // one 1-channel 4x4 image with pixel value = its index, patch 2
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let p = patchify(&img, (1, 1, 4, 4), 2);
        assert_eq!(&p[0..4], &[0.0, 1.0, 4.0, 5.0]);
        assert_eq!(&p[4..8], &[2.0, 3.0, 6.0, 7.0]);
        assert_eq!(&p[12..16], &[10.0, 11.0, 14.0, 15.0]);
    }
}
