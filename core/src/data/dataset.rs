//! In-memory image classification data: `u8` pixels, CHW per sample, samples back to back.

use super::error::DataError;
use super::subset::{balanced_indices, held_out_indices};

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Image `i` is `images[i * C * H * W .. (i + 1) * C * H * W]`, in CHW order.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub len: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
}

/// A named pair of train and test sets with the same image shape and classes, and the
/// validation split a run holds out of the training images (`None` as a dataset is loaded).
#[derive(Clone, Debug, PartialEq)]
pub struct DataSplit {
    pub name: String,
    pub train: Dataset,
    pub test: Dataset,
    pub val: Option<Dataset>,
}

impl Dataset {
    /// Its images' shape and its number of classes.
    pub fn shape(&self) -> super::shape::ImageShape {
        super::shape::ImageShape {
            height: self.height,
            width: self.width,
            channels: self.channels,
            num_classes: self.num_classes,
        }
    }

    /// Checks the invariants every consumer relies on, so that indexing never panics later.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<Dataset, DataError> {
        Self::with_origin(
            "in-memory dataset",
            images,
            labels,
            channels,
            height,
            width,
            num_classes,
        )
    }

    /// As [`Dataset::new`], with `origin` (usually a file path) named in the error messages.
    pub fn with_origin(
        origin: &str,
        images: Vec<u8>,
        labels: Vec<u8>,
        channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<Dataset, DataError> {
        let invalid = |problem: String| DataError::Invalid {
            origin: origin.to_string(),
            problem,
        };
        if channels == 0 || height == 0 || width == 0 {
            return Err(invalid(format!(
                "image shape {channels}x{height}x{width} has a zero dimension; the header is corrupt"
            )));
        }
        if num_classes == 0 || num_classes > 256 {
            return Err(invalid(format!(
                "{num_classes} classes cannot be stored in u8 labels; use 1..=256 classes"
            )));
        }
        let len = labels.len();
        let sample = channels * height * width;
        if images.len() != len * sample {
            return Err(invalid(format!(
                "{} pixel bytes do not make {len} images of {channels}x{height}x{width} \
                 ({} bytes expected); the images and labels do not belong together",
                images.len(),
                len * sample
            )));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(DataError::LabelOutOfRange {
                origin: origin.to_string(),
                index,
                label,
                num_classes,
            });
        }
        Ok(Dataset {
            images,
            labels,
            len,
            channels,
            height,
            width,
            num_classes,
        })
    }

    /// Bytes per image: C * H * W.
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.sample_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Keeps the first `n` samples (all of them if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len);
        self.images.truncate(n * self.sample_len());
        self.labels.truncate(n);
        self.len = n;
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.sample_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            len: indices.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
        }
    }

    /// A class-balanced subset: `keep(count)` images of each class that has `count`, drawn
    /// with `seed` (each class shuffled by its own stream, the first `keep` taken, so a smaller
    /// subset of the same seed is part of a larger one), in the dataset's order.
    pub fn balanced_subset(&self, keep: impl Fn(usize) -> usize, seed: u64) -> Dataset {
        let labels = self.labels.iter().map(|&l| l as usize);
        self.select(&balanced_indices(labels, self.num_classes, keep, seed))
    }

    /// Splits off a class-balanced hold-out (see [`held_out_indices`]): (the rest, the
    /// hold-out), both in the dataset's order.
    pub fn hold_out(&self, take: impl Fn(usize) -> usize, seed: u64) -> (Dataset, Dataset) {
        let labels = self.labels.iter().map(|&l| l as usize);
        let (rest, held) = held_out_indices(labels, self.num_classes, take, seed);
        (self.select(&rest), self.select(&held))
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        // 3 samples of 1x2x2, pixel value = sample index * 10 + position
        let images = (0..3u8)
            .flat_map(|s| (0..4u8).map(move |p| s * 10 + p))
            .collect();
        Dataset::new(images, vec![2, 0, 2], 1, 2, 2, 3).unwrap()
    }

    #[test]
    fn image_slices_and_counts() {
        let d = tiny();
        assert_eq!(d.len, 3);
        assert_eq!(d.sample_len(), 4);
        assert_eq!(d.image(1), &[10, 11, 12, 13]);
        assert_eq!(d.class_counts(), vec![1, 0, 2]);
    }

    #[test]
    fn truncate_keeps_prefix() {
        let mut d = tiny();
        d.truncate(2);
        assert_eq!(d.len, 2);
        assert_eq!(d.labels, vec![2, 0]);
        assert_eq!(d.images.len(), 8);
        assert_eq!(d.image(1), &[10, 11, 12, 13]);
        d.truncate(10);
        assert_eq!(d.len, 2);
    }

    #[test]
    fn label_out_of_range_is_refused() {
        let err = Dataset::new(vec![0; 8], vec![1, 3], 1, 2, 2, 3).unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                index: 1,
                label: 3,
                num_classes: 3,
                ..
            }
        ));
        assert!(err.to_string().contains("data.name"), "{err}");
    }

    #[test]
    fn pixel_count_mismatch_is_refused() {
        let err = Dataset::new(vec![0; 7], vec![1, 0], 1, 2, 2, 3).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("7 pixel bytes") && msg.contains("8 bytes expected"),
            "{msg}"
        );
    }

    /// 10 classes of unequal sizes; pixel = the sample's index, so images follow their labels.
    fn unbalanced() -> Dataset {
        let labels: Vec<u8> = (0..1000u32).map(|i| ((i * 7) % 13 % 10) as u8).collect();
        let images = (0..1000u32).map(|i| (i % 251) as u8).collect();
        Dataset::new(images, labels, 1, 1, 1, 10).unwrap()
    }

    #[test]
    fn a_hold_out_is_balanced_disjoint_stable_and_leaves_every_class_an_image() {
        let d = unbalanced();
        let counts = d.class_counts();
        let tenth = |c: usize| ((0.1 * c as f64).round() as usize).max(1);
        let (rest, val) = d.hold_out(tenth, 3);
        let want: Vec<usize> = counts.iter().map(|&c| tenth(c)).collect();
        assert_eq!(val.class_counts(), want);
        assert_eq!(rest.len + val.len, d.len);
        let labels = d.labels.iter().map(|&l| l as usize);
        let (ri, vi) = held_out_indices(labels.clone(), 10, tenth, 3);
        assert!(ri.iter().all(|i| !vi.contains(i)), "disjoint");
        let mut all: Vec<usize> = ri.iter().chain(&vi).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..d.len).collect::<Vec<_>>(),
            "together, every image once"
        );
        assert_eq!(
            (ri.clone(), vi.clone()),
            held_out_indices(labels.clone(), 10, tenth, 3)
        );
        assert_ne!(vi, held_out_indices(labels.clone(), 10, tenth, 4).1);
        // not the draw of a training subset with the same seed
        assert_ne!(vi, balanced_indices(labels.clone(), 10, tenth, 3));
        // a class of one image keeps it for training; asking for everything leaves one
        let (rest, val) = Dataset::new(vec![0; 3], vec![0, 1, 1], 1, 1, 1, 2)
            .unwrap()
            .hold_out(|c| c, 0);
        assert_eq!(
            (rest.class_counts(), val.class_counts()),
            (vec![1, 1], vec![0, 1])
        );
    }

    #[test]
    fn a_balanced_subset_takes_its_share_of_every_class_and_nests() {
        let d = unbalanced();
        let counts = d.class_counts();
        let share = |f: f64| move |c: usize| ((f * c as f64).round() as usize).max(1);
        let quarter = d.balanced_subset(share(0.25), 7);
        let want: Vec<usize> = counts.iter().map(|&c| share(0.25)(c)).collect();
        assert_eq!(quarter.class_counts(), want);
        // the same images for the same seed; another seed draws others
        assert_eq!(quarter, d.balanced_subset(share(0.25), 7));
        assert_ne!(quarter, d.balanced_subset(share(0.25), 8));
        // images stay with their labels, in the dataset's order
        let full: Vec<(u8, u8)> = d
            .images
            .iter()
            .copied()
            .zip(d.labels.iter().copied())
            .collect();
        for (img, lab) in quarter.images.iter().zip(&quarter.labels) {
            assert!(full.contains(&(*img, *lab)));
        }
        // smaller fractions are subsets of larger ones
        let tenth = d.balanced_subset(share(0.1), 7);
        let half = d.balanced_subset(share(0.5), 7);
        let pairs = |s: &Dataset| -> Vec<(u8, u8)> {
            s.images
                .iter()
                .copied()
                .zip(s.labels.iter().copied())
                .collect()
        };
        for p in pairs(&tenth) {
            assert!(pairs(&quarter).contains(&p));
        }
        for p in pairs(&quarter) {
            assert!(pairs(&half).contains(&p));
        }
        let per_class = d.balanced_subset(|_| 5, 0);
        assert_eq!(per_class.class_counts(), vec![5; 10]);
        assert_eq!(per_class.len, 50);
    }
}
