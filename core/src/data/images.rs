//! What a run trains on, whatever its source: images held in memory (the IDX and CIFAR sets)
//! or an image folder read from disk as the training goes.

use std::sync::Arc;

use super::dataset::{DataSplit, Dataset};
use super::folder::{FolderSplit, ImageFolder};
use super::ImageShape;
use incubator_events::EvalSplit;

pub enum Data {
    Memory(DataSplit),
    Folder(FolderSplit),
}

/// One split of [`Data`]: the training or the test images.
#[derive(Clone, Copy)]
pub enum Images<'a> {
    Memory(&'a Dataset),
    Folder(&'a Arc<ImageFolder>),
}

impl Data {
    pub fn name(&self) -> String {
        match self {
            Data::Memory(d) => d.name.clone(),
            Data::Folder(f) => format!("folder {}", f.root.display()),
        }
    }

    pub fn train(&self) -> Images<'_> {
        match self {
            Data::Memory(d) => Images::Memory(&d.train),
            Data::Folder(f) => Images::Folder(&f.train),
        }
    }

    pub fn test(&self) -> Images<'_> {
        match self {
            Data::Memory(d) => Images::Memory(&d.test),
            Data::Folder(f) => Images::Folder(&f.test),
        }
    }

    /// The validation split held out of the training images, if the run has one.
    pub fn val(&self) -> Option<Images<'_>> {
        match self {
            Data::Memory(d) => d.val.as_ref().map(Images::Memory),
            Data::Folder(f) => f.val.as_ref().map(Images::Folder),
        }
    }

    /// The split per-epoch evaluation (and the best epoch) uses: validation when the run has
    /// one, else test.
    pub fn per_epoch_split(&self) -> EvalSplit {
        match self.val() {
            Some(_) => EvalSplit::Val,
            None => EvalSplit::Test,
        }
    }

    /// The images of `split` (`None`: the run holds out no validation split).
    pub fn split(&self, split: EvalSplit) -> Option<Images<'_>> {
        match split {
            EvalSplit::Train => Some(self.train()),
            EvalSplit::Val => self.val(),
            EvalSplit::Test => Some(self.test()),
        }
    }
}

impl Images<'_> {
    pub fn len(&self) -> usize {
        match self {
            Images::Memory(d) => d.len,
            Images::Folder(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num_classes(&self) -> usize {
        match self {
            Images::Memory(d) => d.num_classes,
            Images::Folder(f) => f.num_classes,
        }
    }

    /// The images a model takes from these: in-memory images as they are stored, a folder's
    /// (any size) as RGB crops of `crop` pixels.
    pub fn shape(&self, crop: usize) -> ImageShape {
        match self {
            Images::Memory(d) => d.shape(),
            Images::Folder(f) => super::folder::folder_shape(f.num_classes, crop),
        }
    }
}
