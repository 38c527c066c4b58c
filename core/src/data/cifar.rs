//! The CIFAR "binary version" files: fixed-size records of label byte(s) followed by 3072
//! pixel bytes in CHW order (1024 red, 1024 green, 1024 blue, rows of 32).
//! CIFAR-10: `data_batch_1..5.bin` and `test_batch.bin`, record = label + pixels.
//! CIFAR-100: `train.bin` and `test.bin`, record = coarse label + fine label + pixels.

use std::path::{Path, PathBuf};

use super::dataset::{DataSplit, Dataset};
use super::error::DataError;
use super::idx::{find_file, read_file, split};

const PIXELS: usize = 3 * 32 * 32;
const FIX: &str = "download the binary version from https://www.cs.toronto.edu/~kriz/cifar.html, \
                   unpack it and set data.path to the unpacked directory";

/// What distinguishes the two layouts.
struct Layout {
    format: &'static str,
    /// The official archives unpack into this subdirectory; accept either level.
    subdir: &'static str,
    train: &'static [&'static str],
    test: &'static str,
    labels_per_record: usize,
    /// Which label byte of the record is the class (CIFAR-100: the fine label).
    label_index: usize,
    num_classes: usize,
}

const CIFAR10: Layout = Layout {
    format: "CIFAR-10",
    subdir: "cifar-10-batches-bin",
    train: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    test: "test_batch.bin",
    labels_per_record: 1,
    label_index: 0,
    num_classes: 10,
};

const CIFAR100: Layout = Layout {
    format: "CIFAR-100",
    subdir: "cifar-100-binary",
    train: &["train.bin"],
    test: "test.bin",
    labels_per_record: 2,
    label_index: 1,
    num_classes: 100,
};

/// Reads several record files into one dataset, in the given order.
fn read_records(files: &[PathBuf], layout: &Layout) -> Result<Dataset, DataError> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for path in files {
        append_records(path, &read_file(path)?, layout, &mut images, &mut labels)?;
    }
    let origin = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Dataset::with_origin(&origin, images, labels, 3, 32, 32, layout.num_classes)
}

/// Splits one file's records into pixels and labels.
fn append_records(
    path: &Path,
    bytes: &[u8],
    layout: &Layout,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    let record = layout.labels_per_record + PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(DataError::CifarRecord {
            path: path.to_path_buf(),
            len: bytes.len(),
            record,
            format: layout.format,
        });
    }
    for rec in bytes.chunks_exact(record) {
        labels.push(rec[layout.label_index]);
        images.extend_from_slice(&rec[layout.labels_per_record..]);
    }
    Ok(())
}

/// A dataset from the contents of one CIFAR-10 (or, with `cifar100`, CIFAR-100) binary file;
/// `path` only names it in errors.
pub fn dataset_from_bytes(path: &Path, bytes: &[u8], cifar100: bool) -> Result<Dataset, DataError> {
    let layout = if cifar100 { &CIFAR100 } else { &CIFAR10 };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    append_records(path, bytes, layout, &mut images, &mut labels)?;
    Dataset::with_origin(
        &path.display().to_string(),
        images,
        labels,
        3,
        32,
        32,
        layout.num_classes,
    )
}

fn load(dir: &Path, layout: &Layout, name: &str) -> Result<DataSplit, DataError> {
    let nested = dir.join(layout.subdir);
    let dir = if nested.is_dir() { &nested } else { dir };
    let file = |base: &str| find_file(dir, base, FIX);
    let train = layout
        .train
        .iter()
        .map(|b| file(b))
        .collect::<Result<Vec<_>, _>>()?;
    let test = file(layout.test)?;
    let train = read_records(&train, layout)?;
    let test = read_records(&[test], layout)?;
    split(name, train, test, dir)
}

pub fn load_cifar10(dir: &Path) -> Result<DataSplit, DataError> {
    load(dir, &CIFAR10, "cifar10")
}

/// Uses the 100 fine labels; the 20 coarse superclasses are dropped.
pub fn load_cifar100(dir: &Path) -> Result<DataSplit, DataError> {
    load(dir, &CIFAR100, "cifar100")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose pixels encode (sample, channel) so the CHW order can be checked.
    fn record(labels: &[u8], sample: u8) -> Vec<u8> {
        let mut r = labels.to_vec();
        for c in 0..3u8 {
            r.extend(std::iter::repeat(sample.wrapping_mul(3).wrapping_add(c)).take(1024));
        }
        r
    }

    fn write(path: &Path, records: &[Vec<u8>]) {
        std::fs::write(path, records.concat()).unwrap();
    }

    #[test]
    fn cifar10_reads_all_batches_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for b in 1..=5u8 {
            let recs: Vec<_> = (0..2u8).map(|i| record(&[b + i], b * 2 + i)).collect();
            write(&dir.path().join(format!("data_batch_{b}.bin")), &recs);
        }
        write(
            &dir.path().join("test_batch.bin"),
            &[record(&[9], 100), record(&[0], 101), record(&[3], 50)],
        );
        let s = load_cifar10(dir.path()).unwrap();
        assert_eq!((s.train.len, s.test.len), (10, 3));
        assert_eq!(
            (s.train.channels, s.train.height, s.train.width),
            (3, 32, 32)
        );
        assert_eq!(s.train.labels, vec![1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
        assert_eq!(s.test.labels, vec![9, 0, 3]);
        // sample 3 is the second record of batch 2: value 5*3 + channel
        let img = s.train.image(3);
        assert_eq!((img[0], img[1024], img[2048], img[3071]), (15, 16, 17, 17));
        assert_eq!(s.test.image(2)[1500], 50 * 3 + 1);
    }

    #[test]
    fn cifar10_accepts_the_archive_subdirectory_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&sub).unwrap();
        for b in 1..=5 {
            write(&sub.join(format!("data_batch_{b}.bin")), &[record(&[1], 0)]);
        }
        // a gzipped test batch under the .gz name
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &record(&[7], 1)).unwrap();
        std::fs::write(sub.join("test_batch.bin.gz"), enc.finish().unwrap()).unwrap();
        let s = load_cifar10(dir.path()).unwrap();
        assert_eq!(s.test.labels, vec![7]);
    }

    #[test]
    fn cifar100_uses_fine_labels() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("train.bin"),
            &[record(&[19, 99], 0), record(&[4, 42], 1)],
        );
        write(&dir.path().join("test.bin"), &[record(&[0, 7], 2)]);
        let s = load_cifar100(dir.path()).unwrap();
        assert_eq!(s.name, "cifar100");
        assert_eq!(s.train.num_classes, 100);
        assert_eq!(s.train.labels, vec![99, 42]);
        assert_eq!(s.test.labels, vec![7]);
        assert_eq!(s.train.image(1)[2048], 5);
    }

    #[test]
    fn truncated_record_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = [record(&[0, 1], 0), record(&[0, 2], 1)].concat();
        bytes.truncate(3074 + 100);
        std::fs::write(dir.path().join("train.bin"), bytes).unwrap();
        write(&dir.path().join("test.bin"), &[record(&[0, 7], 2)]);
        let err = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            DataError::CifarRecord {
                len: 3174,
                record: 3074,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("train.bin") && msg.contains("1 whole records and 100 bytes left over"),
            "{msg}"
        );
    }

    #[test]
    fn label_out_of_range_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // a CIFAR-100 file read as CIFAR-10: the coarse label 12 is out of range
        for b in 1..=5 {
            write(
                &dir.path().join(format!("data_batch_{b}.bin")),
                &[record(&[3], 0)],
            );
        }
        write(&dir.path().join("test_batch.bin"), &[record(&[12], 0)]);
        let err = load_cifar10(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::LabelOutOfRange { label: 12, .. }));
        assert!(err.to_string().contains("test_batch.bin"), "{err}");
    }

    #[test]
    fn missing_batch_tells_where_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let msg = load_cifar10(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("data_batch_1.bin")
                && msg.contains("cs.toronto.edu")
                && msg.contains("data.path"),
            "{msg}"
        );
    }
}
