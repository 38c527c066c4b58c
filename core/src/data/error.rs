//! Errors of the data layer. Every message names the file (or dataset), what is wrong with it
//! and what the user can do about it, because these errors end up in front of a person who
//! only sees the message.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("dataset file {} not found (looked for plain and .gz); {fix}", path.display())]
    Missing { path: PathBuf, fix: String },

    #[error("could not read {}: {source}; check that the file exists and is readable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not write {}: {source}; check that the directory is writable and the disk is not full", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "{}: gzip data is corrupt ({source}): the file is damaged or an interrupted download; \
         delete it and fetch again",
        path.display()
    )]
    Gzip {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "{}: bad IDX magic {found:#010x}, expected {expected:#010x} for an IDX {kind} file: \
         the file is corrupt or not an IDX file; delete it and fetch again",
        path.display()
    )]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        kind: &'static str,
    },

    #[error(
        "{}: holds {actual} bytes but its header promises {expected}: the file is truncated \
         or padded (an interrupted download?); delete it and fetch again",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        actual: u64,
        expected: u64,
    },

    #[error(
        "{} holds {images} images but {} holds {labels} labels: the two files belong to \
         different datasets or splits; put the matching pair side by side (or fetch again)",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        images_path: PathBuf,
        images: usize,
        labels_path: PathBuf,
        labels: usize,
    },

    #[error(
        "{origin}: label {label} of sample {index} is not below the number of classes \
         {num_classes}: the labels do not belong to a {num_classes}-class dataset; check that \
         data.name matches the files in data.path"
    )]
    LabelOutOfRange {
        origin: String,
        index: usize,
        label: u8,
        num_classes: usize,
    },

    #[error("{origin}: {problem}")]
    Invalid { origin: String, problem: String },

    #[error(
        "{}: holds {len} bytes, which is not a whole number of {record}-byte {format} records \
         ({} whole records and {} bytes left over): the file is truncated or not the binary \
         version of {format}; download the binary version again",
        path.display(),
        len / record,
        len % record
    )]
    CifarRecord {
        path: PathBuf,
        len: usize,
        record: usize,
        format: &'static str,
    },

    #[error(
        "{}: sha256 is {actual} but {expected} was expected: the download is corrupt or the \
         registry now serves a different file; delete {} and retry, and if it persists the \
         package changed upstream and the pinned hash must be reviewed",
        path.display(),
        path.display()
    )]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error(
        "{}: {problem}: these are not the files of {dataset}; delete the directory and run \
         `incubator data fetch {dataset}` again",
        path.display()
    )]
    WrongContent {
        path: PathBuf,
        dataset: String,
        problem: String,
    },

    #[error("unknown dataset `{name}`; known datasets: {known}")]
    UnknownDataset { name: String, known: String },

    #[error("`{command}` could not be started ({source}); {install}")]
    ToolMissing {
        command: String,
        install: String,
        #[source]
        source: io::Error,
    },

    #[error("`{command}` failed with {status}: {stderr}")]
    ToolFailed {
        command: String,
        status: String,
        stderr: String,
    },

    #[error(
        "dataset {name} was not found in {}; run `incubator data fetch {name}` or set \
         data.path to a directory containing its IDX files",
        dir.display()
    )]
    NotFetched { name: String, dir: PathBuf },

    #[error(
        "dataset {name} needs data.path: CIFAR is not shipped by any registry reachable here; \
         download the binary version from https://www.cs.toronto.edu/~kriz/cifar.html, unpack \
         it and set data.path to the unpacked directory"
    )]
    NeedsPath { name: String },
    #[error(
        "{name} is read from its files as training goes, not loaded into memory; this command needs an in-memory dataset"
    )]
    NotInMemory { name: String },
    #[error(transparent)]
    Folder(#[from] super::folder::FolderError),
}
