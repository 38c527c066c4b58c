//! The shape of a dataset's images and classes.

use std::fmt;

/// What a dataset's images are, known without reading them: what a model for it is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub num_classes: usize,
}

impl fmt::Display for ImageShape {
    /// `28x28x1 images in 10 classes`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{}x{} images in {} classes",
            self.height, self.width, self.channels, self.num_classes
        )
    }
}
