//! In-memory image classification data: `u8` pixels, CHW per sample, samples back to back.

use super::error::DataError;

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

/// A named pair of train and test sets with the same image shape and classes.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSplit {
    pub name: String,
    pub train: Dataset,
    pub test: Dataset,
}

impl Dataset {
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
}
