//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic, then one u32 per
//! dimension) followed by raw `u8` data. Files may be plain or gzipped; the gzip magic bytes
//! decide, not the name, because mirrors rename and re-compress freely.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::dataset::{DataSplit, Dataset};
use super::error::DataError;

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decompresses `bytes` if they are gzip, else returns them unchanged.
pub fn decode(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Reads a whole file, transparently un-gzipping it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(path, bytes)
}

/// Finds `dir/base` or `dir/base.gz`.
pub(crate) fn find_file(dir: &Path, base: &str, fix: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(base);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{base}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::Missing {
        path: plain,
        fix: fix.to_string(),
    })
}

/// Splits off the header after checking magic and that the payload is exactly the promised size.
fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    kind: &'static str,
    ndims: usize,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let header = 4 + 4 * ndims;
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    if bytes.len() >= 4 && be(0) != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: be(0),
            expected: magic,
            kind,
        });
    }
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            actual: bytes.len() as u64,
            expected: header as u64,
        });
    }
    let dims: Vec<usize> = (0..ndims).map(|d| be(4 + 4 * d) as usize).collect();
    // u128 because three u32 dimensions of a corrupt header can overflow u64
    let expected = header as u128 + dims.iter().map(|&d| d as u128).product::<u128>();
    if bytes.len() as u128 != expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            actual: bytes.len() as u64,
            expected: expected.min(u64::MAX as u128) as u64,
        });
    }
    Ok((dims, &bytes[header..]))
}

/// Parses decoded IDX image bytes into `(n, height, width, pixels)`.
pub(crate) fn parse_images(
    path: &Path,
    bytes: &[u8],
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let (dims, data) = parse(path, bytes, IMAGES_MAGIC, "images", 3)?;
    Ok((dims[0], dims[1], dims[2], data.to_vec()))
}

pub(crate) fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let (_, data) = parse(path, bytes, LABELS_MAGIC, "labels", 1)?;
    Ok(data.to_vec())
}

/// Builds a dataset from decoded image and label file contents; the paths only name them in errors.
pub fn dataset_from_bytes(
    images_path: &Path,
    images: &[u8],
    labels_path: &Path,
    labels: &[u8],
    num_classes: usize,
) -> Result<Dataset, DataError> {
    let (n, h, w, pixels) = parse_images(images_path, images)?;
    let labels = parse_labels(labels_path, labels)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: n,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    Dataset::with_origin(
        &labels_path.display().to_string(),
        pixels,
        labels,
        1,
        h,
        w,
        num_classes,
    )
}

/// Loads one images/labels pair of IDX files (plain or gzipped).
pub fn load_idx_pair(
    images_path: &Path,
    labels_path: &Path,
    num_classes: usize,
) -> Result<Dataset, DataError> {
    let images = read_file(images_path)?;
    let labels = read_file(labels_path)?;
    dataset_from_bytes(images_path, &images, labels_path, &labels, num_classes)
}

/// Loads the four standard MNIST-style files from `dir`, each plain or `.gz`. `fetchable`:
/// whether `incubator data fetch NAME` can get them (the message for missing files says so).
pub fn load_idx_split(
    dir: &Path,
    name: &str,
    num_classes: usize,
    fetchable: bool,
) -> Result<DataSplit, DataError> {
    let fix = if fetchable {
        format!(
            "run `incubator data fetch {name}` or set data.path to a directory containing the IDX files"
        )
    } else {
        "set data.path to a directory containing the IDX files".to_string()
    };
    let file = |base: &str| find_file(dir, base, &fix);
    let train = load_idx_pair(
        &file("train-images-idx3-ubyte")?,
        &file("train-labels-idx1-ubyte")?,
        num_classes,
    )?;
    let test = load_idx_pair(
        &file("t10k-images-idx3-ubyte")?,
        &file("t10k-labels-idx1-ubyte")?,
        num_classes,
    )?;
    split(name, train, test, dir)
}

/// Pairs train and test after checking they hold images of the same shape.
pub(crate) fn split(
    name: &str,
    train: Dataset,
    test: Dataset,
    origin: &Path,
) -> Result<DataSplit, DataError> {
    let shape = |d: &Dataset| (d.channels, d.height, d.width);
    if shape(&train) != shape(&test) {
        return Err(DataError::Invalid {
            origin: origin.display().to_string(),
            problem: format!(
                "train images are {:?} (CxHxW) but test images are {:?}; the files come from \
                 different datasets",
                shape(&train),
                shape(&test)
            ),
        });
    }
    Ok(DataSplit {
        name: name.to_string(),
        train,
        test,
        val: None,
    })
}

fn write_file(path: &Path, header: &[u32], data: &[u8], gzip: bool) -> Result<(), DataError> {
    let werr = |source| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufWriter::new(File::create(path).map_err(werr)?);
    let write_all = |out: &mut dyn Write| -> std::io::Result<()> {
        for v in header {
            out.write_all(&v.to_be_bytes())?;
        }
        out.write_all(data)
    };
    if gzip {
        // GzEncoder writes mtime 0, so the same data always gives the same bytes (reproducible assets)
        let mut enc = GzEncoder::new(file, Compression::best());
        write_all(&mut enc).map_err(werr)?;
        file = enc.finish().map_err(werr)?;
    } else {
        write_all(&mut file).map_err(werr)?;
    }
    // flush explicitly: BufWriter's drop would swallow a disk-full error
    file.flush().map_err(werr)
}

fn to_u32(path: &Path, v: usize) -> Result<u32, DataError> {
    u32::try_from(v).map_err(|_| DataError::Invalid {
        origin: path.display().to_string(),
        problem: format!("dimension {v} does not fit the u32 of an IDX header"),
    })
}

/// Writes the images of a single-channel dataset as an IDX3 file.
pub fn write_idx_images(path: &Path, d: &Dataset, gzip: bool) -> Result<(), DataError> {
    if d.channels != 1 {
        return Err(DataError::Invalid {
            origin: path.display().to_string(),
            problem: format!(
                "IDX image files hold one channel, the dataset has {}; write CIFAR data in its own format",
                d.channels
            ),
        });
    }
    let header = [
        IMAGES_MAGIC,
        to_u32(path, d.len)?,
        to_u32(path, d.height)?,
        to_u32(path, d.width)?,
    ];
    write_file(path, &header, &d.images, gzip)
}

pub fn write_idx_labels(path: &Path, d: &Dataset, gzip: bool) -> Result<(), DataError> {
    write_file(path, &[LABELS_MAGIC, to_u32(path, d.len)?], &d.labels, gzip)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic single-channel dataset; labels cycle through the classes.
    pub(crate) fn toy(len: usize, h: usize, w: usize, num_classes: usize) -> Dataset {
        let images = (0..len * h * w).map(|i| (i * 7 % 251) as u8).collect();
        let labels = (0..len).map(|i| (i % num_classes) as u8).collect();
        Dataset::new(images, labels, 1, h, w, num_classes).unwrap()
    }

    /// Writes the four standard files of `train`/`test` into `dir`.
    pub(crate) fn write_split(dir: &Path, train: &Dataset, test: &Dataset, gzip: bool) {
        let ext = if gzip { ".gz" } else { "" };
        for (prefix, d) in [("train", train), ("t10k", test)] {
            write_idx_images(
                &dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
                d,
                gzip,
            )
            .unwrap();
            write_idx_labels(
                &dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
                d,
                gzip,
            )
            .unwrap();
        }
    }

    #[test]
    fn round_trip_plain_and_gzip() {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (train, test) = (toy(13, 5, 4, 10), toy(7, 5, 4, 10));
            write_split(dir.path(), &train, &test, gzip);
            let split = load_idx_split(dir.path(), "toy", 10, false).unwrap();
            assert_eq!(split.name, "toy");
            assert_eq!(split.train, train);
            assert_eq!(split.test, test);
            let raw = std::fs::read(dir.path().join(if gzip {
                "train-labels-idx1-ubyte.gz"
            } else {
                "train-labels-idx1-ubyte"
            }))
            .unwrap();
            assert_eq!(raw.starts_with(&GZIP_MAGIC), gzip);
        }
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = toy(3, 2, 2, 10);
        // gzipped data under the plain name, plain data under the .gz name
        let (img, lab) = (dir.path().join("a"), dir.path().join("b.gz"));
        write_idx_images(&img, &d, true).unwrap();
        write_idx_labels(&lab, &d, false).unwrap();
        assert_eq!(load_idx_pair(&img, &lab, 10).unwrap(), d);
    }

    #[test]
    fn gzip_output_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let d = toy(20, 6, 6, 10);
        let (a, b) = (dir.path().join("a.gz"), dir.path().join("b.gz"));
        write_idx_images(&a, &d, true).unwrap();
        write_idx_images(&b, &d, true).unwrap();
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }

    #[test]
    fn bad_magic_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = toy(3, 2, 2, 10);
        let p = dir.path().join("imgs");
        // a labels file where an images file is expected
        write_idx_labels(&p, &d, false).unwrap();
        let err = load_idx_pair(&p, &p, 10).unwrap_err();
        assert!(matches!(
            err,
            DataError::BadMagic {
                found: 0x801,
                expected: 0x803,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("imgs")
                && msg.contains("0x00000801")
                && msg.contains("0x00000803")
                && msg.contains("fetch again"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_file_reports_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let d = toy(3, 2, 2, 10);
        let p = dir.path().join("imgs");
        write_idx_images(&p, &d, false).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 16 + 12);
        std::fs::write(&p, &bytes[..20]).unwrap();
        let err = read_file(&p)
            .and_then(|b| parse_images(&p, &b))
            .unwrap_err();
        assert!(matches!(
            err,
            DataError::Truncated {
                actual: 20,
                expected: 28,
                ..
            }
        ));
        assert!(
            err.to_string()
                .contains("holds 20 bytes but its header promises 28"),
            "{err}"
        );
        // trailing bytes are as suspicious as missing ones
        std::fs::write(&p, [&bytes[..], &[0]].concat()).unwrap();
        let err = read_file(&p)
            .and_then(|b| parse_images(&p, &b))
            .unwrap_err();
        assert!(matches!(
            err,
            DataError::Truncated {
                actual: 29,
                expected: 28,
                ..
            }
        ));
        // shorter than the header itself
        std::fs::write(&p, &bytes[..6]).unwrap();
        let err = read_file(&p)
            .and_then(|b| parse_images(&p, &b))
            .unwrap_err();
        assert!(matches!(
            err,
            DataError::Truncated {
                actual: 6,
                expected: 16,
                ..
            }
        ));
    }

    #[test]
    fn corrupt_gzip_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("imgs.gz");
        write_idx_images(&p, &toy(50, 8, 8, 10), true).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_file(&p).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("imgs.gz"), "{err}");
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (img, lab) = (dir.path().join("imgs"), dir.path().join("labs"));
        write_idx_images(&img, &toy(5, 2, 2, 10), false).unwrap();
        write_idx_labels(&lab, &toy(4, 2, 2, 10), false).unwrap();
        let err = load_idx_pair(&img, &lab, 10).unwrap_err();
        assert!(matches!(
            err,
            DataError::CountMismatch {
                images: 5,
                labels: 4,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(msg.contains("imgs") && msg.contains("labs"), "{msg}");
    }

    #[test]
    fn label_out_of_range_names_the_labels_file() {
        let dir = tempfile::tempdir().unwrap();
        let (img, lab) = (dir.path().join("imgs"), dir.path().join("labs"));
        let d = toy(12, 2, 2, 10); // labels 0..=9
        write_idx_images(&img, &d, false).unwrap();
        write_idx_labels(&lab, &d, false).unwrap();
        let err = load_idx_pair(&img, &lab, 5).unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                index: 5,
                label: 5,
                num_classes: 5,
                ..
            }
        ));
        assert!(err.to_string().contains("labs"), "{err}");
    }

    #[test]
    fn missing_file_message_has_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_idx_split(dir.path(), "mnist", 10, true).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Missing { .. }));
        assert!(
            msg.contains("train-images-idx3-ubyte")
                && msg.contains(".gz")
                && msg.contains("incubator data fetch mnist")
                && msg.contains("data.path"),
            "{msg}"
        );
        // names nobody can fetch do not advertise a fetch command
        let msg = load_idx_split(dir.path(), "toy", 10, false)
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("fetch") && msg.contains("data.path"), "{msg}");
    }

    #[test]
    fn train_test_shape_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_split(dir.path(), &toy(3, 2, 2, 10), &toy(3, 3, 3, 10), false);
        let err = load_idx_split(dir.path(), "toy", 10, false).unwrap_err();
        assert!(matches!(err, DataError::Invalid { .. }), "{err}");
    }
}
