//! Turning dataset samples into model inputs: random crop and flip (then, when asked, DeiT's
//! CIFAR additions: RandAugment and random erasing), normalisation, mixup / cutmix with label
//! smoothing (timm's `Mixup` in batch mode), and patchification.

use super::folder_pipelines::FolderPipelines;
use crate::config::{AugmentSection, RunConfig};
use crate::data::folder::{random_erase, LoadedBatch, RandAugment};
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
    /// In-memory sets with `augment.rand_augment_in_memory`: DeiT's CIFAR additions.
    pub in_memory: Option<InMemoryExtras>,
}

/// RandAugment after the crop and flip, random erasing after normalisation: what DeiT's CIFAR
/// pipeline adds to the padded crop and flip.
#[derive(Clone, Debug)]
pub struct InMemoryExtras {
    pub rand_augment: Option<RandAugment>,
    pub erase_prob: f64,
}

/// The batch maker of a run's config: its normalisation, augmentation and, for image folders,
/// the DeiT pipelines.
pub fn batch_maker<'a>(dev: &'a Dev, cfg: &'a RunConfig, vit: &'a VitConfig) -> BatchMaker<'a> {
    let (mean, std) = match cfg.data.normalize {
        crate::config::Normalization::Dataset => crate::data::mean_std(&cfg.data.dataset),
        crate::config::Normalization::Imagenet => {
            crate::data::mean_std(&crate::data::DatasetName::Folder)
        }
    };
    let folder = (cfg.data.dataset == crate::data::DatasetName::Folder)
        .then(|| super::folder_pipelines::pipelines(cfg, vit.image_size));
    let a = &cfg.augment;
    let in_memory = (folder.is_none() && a.rand_augment_in_memory).then(|| InMemoryExtras {
        rand_augment: (!a.rand_augment.is_empty()).then(|| {
            crate::data::folder::RandAugment::parse(&a.rand_augment)
                .expect("RunConfig::validate parses augment.rand_augment")
        }),
        erase_prob: a.reprob,
    });
    BatchMaker {
        dev,
        vit,
        augment: &cfg.augment,
        mean,
        std,
        folder,
        in_memory,
    }
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
            let out = &mut images[k * c * h * w..(k + 1) * c * h * w];
            let mut px = shifted(data.image(i), (c, h, w), oy, ox, flip);
            if let Some(ra) = self
                .in_memory
                .as_ref()
                .and_then(|e| e.rand_augment.as_ref())
            {
                px = rand_augment(ra, px, (c, h, w), rng);
            }
            self.normalize(&px, out, c);
            if let Some(extras) = &self.in_memory {
                if extras.erase_prob > 0.0 && rng.gen_bool(extras.erase_prob) {
                    random_erase(out, (c, h, w), rng);
                }
            }
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
            self.normalize(
                data.image(i),
                &mut images[k * c * h * w..(k + 1) * c * h * w],
                c,
            );
        }
        images
    }

    /// Normalised pixels of one (c, h, w) image into `dst`.
    fn normalize(&self, px: &[u8], dst: &mut [f32], c: usize) {
        let plane = px.len() / c;
        for (ch, (src, dst)) in px.chunks(plane).zip(dst.chunks_mut(plane)).enumerate() {
            let (m, s) = (self.mean[ch], self.std[ch]);
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = (v as f32 / 255.0 - m) / s;
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

/// The raw (c, h, w) pixels shifted by (oy, ox) with zero padding (torchvision's RandomCrop
/// pads the raw image with zeros) and optionally mirrored.
fn shifted(
    src: &[u8],
    (c, h, w): (usize, usize, usize),
    oy: isize,
    ox: isize,
    flip: bool,
) -> Vec<u8> {
    let mut out = vec![0u8; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let sx = if flip { w - 1 - x } else { x } as isize + ox;
                let sy = y as isize + oy;
                if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                    out[ch * h * w + y * w + x] = src[ch * h * w + sy as usize * w + sx as usize];
                }
            }
        }
    }
    out
}

/// RandAugment on (c, h, w) pixels: three channels as one RGB image; a grey image as RGB
/// with equal channels, read back from its first (the operations keep the channels equal but
/// for the fill of pixels an affine operation moves in, the ImageNet mean's red, 124); any
/// other channel count channel by channel, each as grey.
fn rand_augment(
    ra: &RandAugment,
    px: Vec<u8>,
    (c, h, w): (usize, usize, usize),
    rng: &mut ChaCha8Rng,
) -> Vec<u8> {
    let plane = h * w;
    let to_rgb = |planes: [&[u8]; 3]| {
        let mut raw = Vec::with_capacity(3 * plane);
        for i in 0..plane {
            raw.extend(planes.iter().map(|p| p[i]));
        }
        image::RgbImage::from_raw(w as u32, h as u32, raw).expect("3 * h * w bytes")
    };
    if c == 3 {
        let img = to_rgb([&px[..plane], &px[plane..2 * plane], &px[2 * plane..]]);
        let img = ra.apply(img, rng);
        let mut out = vec![0u8; 3 * plane];
        for (i, p) in img.pixels().enumerate() {
            for ch in 0..3 {
                out[ch * plane + i] = p.0[ch];
            }
        }
        return out;
    }
    let mut out = Vec::with_capacity(c * plane);
    for ch in 0..c {
        let grey = &px[ch * plane..(ch + 1) * plane];
        let img = ra.apply(to_rgb([grey, grey, grey]), rng);
        out.extend(img.pixels().map(|p| p.0[0]));
    }
    out
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

    use rand::SeedableRng;

    /// Four random 8x8 images of `c` channels, and a maker without mixing, crop or flip.
    fn setup(c: usize) -> (Dataset, VitConfig, AugmentSection) {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let images: Vec<u8> = (0..4 * c * 64).map(|_| rng.gen()).collect();
        let data = Dataset::new(images, vec![0, 1, 2, 1], c, 8, 8, 3).unwrap();
        let vit = VitConfig::preset("mnist-small", 8, c, Some(4), 3).unwrap();
        let augment = AugmentSection {
            mix_prob: 0.0,
            ..Default::default()
        };
        (data, vit, augment)
    }

    fn maker<'a>(
        dev: &'a Dev,
        vit: &'a VitConfig,
        augment: &'a AugmentSection,
        in_memory: Option<InMemoryExtras>,
    ) -> BatchMaker<'a> {
        BatchMaker {
            dev,
            vit,
            augment,
            mean: vec![0.5; vit.channels],
            std: vec![0.25; vit.channels],
            folder: None,
            in_memory,
        }
    }

    fn train_patches(m: &BatchMaker, data: &Dataset, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        m.train(data, &[0, 1, 2, 3], &mut rng).patches.as_vec()
    }

    #[test]
    fn in_memory_rand_augment_changes_training_images_only_and_repeats_per_seed() {
        let dev = Dev::default();
        for c in [1, 3] {
            let (data, vit, augment) = setup(c);
            let off = maker(&dev, &vit, &augment, None);
            let ra = InMemoryExtras {
                rand_augment: Some(RandAugment::parse("rand-m9-mstd0.5-inc1").unwrap()),
                erase_prob: 0.0,
            };
            let on = maker(&dev, &vit, &augment, Some(ra));
            let plain = train_patches(&off, &data, 1);
            let augmented = train_patches(&on, &data, 1);
            assert_ne!(plain, augmented, "{c} channels");
            assert_eq!(
                augmented,
                train_patches(&on, &data, 1),
                "the same seed, the same images"
            );
            assert_ne!(augmented, train_patches(&on, &data, 2));
            assert_eq!(
                off.eval(&data, &[0, 1, 2, 3]).patches.as_vec(),
                on.eval(&data, &[0, 1, 2, 3]).patches.as_vec(),
                "evaluation is never augmented"
            );
        }
    }

    #[test]
    fn in_memory_random_erasing_replaces_one_box_in_every_channel() {
        let dev = Dev::default();
        let (data, vit, augment) = setup(3);
        let off = maker(&dev, &vit, &augment, None);
        let erase = InMemoryExtras {
            rand_augment: None,
            erase_prob: 1.0,
        };
        let on = maker(&dev, &vit, &augment, Some(erase));
        // patches of 4x4 over 8x8: back to (image, channel, pixel) through the layout
        let (plain, erased) = (train_patches(&off, &data, 1), train_patches(&on, &data, 1));
        let per_image = 3 * 64;
        for k in 0..4 {
            let changed: Vec<usize> = (0..per_image)
                .filter(|&i| plain[k * per_image + i] != erased[k * per_image + i])
                .collect();
            // a box of 2% to a third of the 64 pixels, in all three channels
            assert!(
                (3..=3 * 30).contains(&changed.len()),
                "image {k}: {}",
                changed.len()
            );
            assert_eq!(changed.len() % 3, 0, "image {k}");
        }
    }

    #[test]
    fn images_are_normalised_with_the_datasets_statistics_or_imagenets() {
        let dev = crate::device::new_device(0);
        let mut cfg = crate::config::RunConfig::default();
        cfg.data.dataset = crate::data::DatasetName::Cifar10;
        let vit = cfg.vit(32, 3, 10).unwrap();
        let own = batch_maker(&dev, &cfg, &vit).mean;
        assert_eq!(own, vec![0.4914, 0.4822, 0.4465]);
        cfg.data.normalize = crate::config::Normalization::Imagenet;
        let maker = batch_maker(&dev, &cfg, &vit);
        assert_eq!(maker.mean, vec![0.485, 0.456, 0.406]);
        assert_eq!(maker.std, vec![0.229, 0.224, 0.225]);
    }

    #[test]
    fn shifting_raw_pixels_pads_with_zeros_and_mirrors() {
        let src: Vec<u8> = (1..=18).collect(); // 2 channels of 3x3
        let px = shifted(&src, (2, 3, 3), 1, -1, true);
        // row y reads row y + 1; column x reads the mirrored column (2 - x) shifted by -1
        assert_eq!(&px[..9], &[5, 4, 0, 8, 7, 0, 0, 0, 0]);
        assert_eq!(&px[9..], &[14, 13, 0, 17, 16, 0, 0, 0, 0]);
    }

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
