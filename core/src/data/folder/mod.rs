//! Image folders in the ImageNet layout (`train/<class>/*.jpg`, `val/<class>/...`), read as
//! the training goes: listed once, decoded per batch in worker threads through the DeiT
//! pipelines.

pub mod index;
pub mod loader;
pub mod rand_augment;
pub mod transform;
pub mod write;

pub use index::{check_classes, folder_shape, list_classes, FolderError, ImageFolder};
pub use loader::{LoadedBatch, LoaderError, LoaderSettings, Pipeline, Stream, Unreadable};
pub use rand_augment::RandAugment;
pub use transform::{
    decode, random_erase, DecodeError, EvalTransform, Normalize, TrainTransform, IMAGENET_MEAN,
    IMAGENET_STD,
};

use std::path::PathBuf;
use std::sync::Arc;

/// The two splits of an image folder (`train/`, and `val/`, which is the test split here),
/// its classes, and the validation split a run holds out of `train/` (`None` as listed).
#[derive(Clone, Debug, PartialEq)]
pub struct FolderSplit {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub train: Arc<ImageFolder>,
    pub test: Arc<ImageFolder>,
    pub val: Option<Arc<ImageFolder>>,
}

impl FolderSplit {
    /// Lists `root/train` and `root/val` with the class list `classes` (the run's).
    pub fn open(root: &std::path::Path, classes: Vec<String>) -> Result<FolderSplit, FolderError> {
        let train = ImageFolder::scan(&root.join("train"), &classes, true)?;
        let test = ImageFolder::scan(&root.join("val"), &classes, false)?;
        Ok(FolderSplit {
            root: root.to_path_buf(),
            classes,
            train: Arc::new(train),
            test: Arc::new(test),
            val: None,
        })
    }
}
