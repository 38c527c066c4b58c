//! Listing an image folder in the ImageNet layout (`train/<class>/*.jpg`, `val/<class>/...`):
//! classes are the sorted subdirectories of `train/` (torchvision's `ImageFolder` order), and
//! `val/` is read with the same class list, so a class missing from `val/` never shifts the
//! labels of the others.

use std::path::{Path, PathBuf};

use crate::data::ImageShape;

/// The file extensions read as images (any case): what the decoder understands.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Why a folder cannot be used; each names the directory and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{dir} does not exist or is not a directory: an image folder has train/<class>/*.jpg and val/<class>/*.jpg (the ImageNet layout); point data.path at the directory that holds train/ and val/")]
    Missing { dir: PathBuf },
    #[error("{dir} has no class subdirectories: put each class's images in train/<class>/ (the ImageNet layout)")]
    NoClasses { dir: PathBuf },
    #[error("class {class:?} ({dir}) has no images{others}: remove the directory or add .jpg/.png images to it (torchvision's ImageFolder refuses an empty class too)")]
    EmptyClass {
        class: String,
        dir: PathBuf,
        others: String,
    },
    #[error("{dir} is a class that train/ does not have; the classes are the subdirectories of train/ ({known}): rename it or add the class to train/")]
    UnknownClass { dir: PathBuf, known: String },
    #[error("{count} classes in {dir}: at most {max} are supported")]
    TooManyClasses {
        dir: PathBuf,
        count: usize,
        max: usize,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the run was made with the {recorded} classes in {file}, but {dir} now has {found}: {difference}. Restore the folder's classes, or train a new run directory")]
    ClassesChanged {
        file: PathBuf,
        dir: PathBuf,
        recorded: usize,
        found: usize,
        difference: String,
    },
}

/// One split of an image folder: every image file with its class, in a fixed order (classes
/// in order, files sorted by path within a class).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFolder {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub labels: Vec<u32>,
    pub num_classes: usize,
    /// Files in the class directories that are not images by their extension: left out.
    pub skipped: Vec<PathBuf>,
}

/// The class names of an image folder: the sorted subdirectories of `root/train`.
pub fn list_classes(root: &Path) -> Result<Vec<String>, FolderError> {
    let train = root.join("train");
    let mut classes: Vec<String> = subdirectories(&train)?
        .into_iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(FolderError::NoClasses { dir: train });
    }
    if classes.len() > MAX_CLASSES {
        return Err(FolderError::TooManyClasses {
            dir: train,
            count: classes.len(),
            max: MAX_CLASSES,
        });
    }
    Ok(classes)
}

/// Labels are u32; this bound keeps a mistaken `data.path` (a home directory, say) from
/// becoming a model with a million outputs.
pub const MAX_CLASSES: usize = 100_000;

/// The shape a model for this folder takes: RGB images of `image_size` (every image is
/// converted to RGB and cropped square, as torchvision's `ImageFolder` with the DeiT
/// transforms does), one class per directory.
pub fn folder_shape(num_classes: usize, image_size: usize) -> ImageShape {
    ImageShape {
        height: image_size,
        width: image_size,
        channels: 3,
        num_classes,
    }
}

impl ImageFolder {
    /// Lists `dir` (`root/train` or `root/val`) with the class list `classes`. In `train/`
    /// every class must have images; in `val/` a class may be absent or empty.
    pub fn scan(
        dir: &Path,
        classes: &[String],
        is_train: bool,
    ) -> Result<ImageFolder, FolderError> {
        let present = subdirectories(dir)?;
        for sub in &present {
            let name = sub.file_name().map(|n| n.to_string_lossy().into_owned());
            if !name.is_some_and(|n| classes.contains(&n)) {
                return Err(FolderError::UnknownClass {
                    dir: sub.clone(),
                    known: abbreviate(classes),
                });
            }
        }
        let mut out = ImageFolder {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            labels: Vec::new(),
            num_classes: classes.len(),
            skipped: Vec::new(),
        };
        for (label, class) in classes.iter().enumerate() {
            let class_dir = dir.join(class);
            if !class_dir.is_dir() {
                if is_train {
                    return Err(FolderError::Missing { dir: class_dir });
                }
                continue;
            }
            let (mut images, others) = files_under(&class_dir)?;
            if images.is_empty() && is_train {
                return Err(FolderError::EmptyClass {
                    class: class.clone(),
                    dir: class_dir,
                    others: match others.len() {
                        0 => String::new(),
                        n => format!(" ({n} other files, not .jpg/.jpeg/.png)"),
                    },
                });
            }
            images.sort();
            out.labels
                .extend(std::iter::repeat_n(label as u32, images.len()));
            out.files.extend(images);
            out.skipped.extend(others);
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// `n` images drawn at random with `seed` (all of them if there are fewer), in the folder's
    /// order: a folder is ordered by class, so its first `n` images would be a few classes.
    pub fn sample(&self, n: usize, seed: u64) -> ImageFolder {
        use rand::seq::index::sample;
        use rand::SeedableRng;
        if n >= self.len() {
            return self.clone();
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut chosen = sample(&mut rng, self.len(), n).into_vec();
        chosen.sort_unstable();
        self.select(&chosen)
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageFolder {
        ImageFolder {
            dir: self.dir.clone(),
            files: indices.iter().map(|&i| self.files[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            num_classes: self.num_classes,
            skipped: self.skipped.clone(),
        }
    }

    /// A class-balanced subset, drawn as [`crate::data::Dataset::balanced_subset`] draws one.
    pub fn balanced_subset(&self, keep: impl Fn(usize) -> usize, seed: u64) -> ImageFolder {
        let labels = self.labels.iter().map(|&l| l as usize);
        let indices = crate::data::dataset::balanced_indices(labels, self.num_classes, keep, seed);
        self.select(&indices)
    }

    /// Splits off a class-balanced hold-out, as [`crate::data::Dataset::hold_out`] does:
    /// (the rest, the hold-out).
    pub fn hold_out(&self, take: impl Fn(usize) -> usize, seed: u64) -> (ImageFolder, ImageFolder) {
        let labels = self.labels.iter().map(|&l| l as usize);
        let (rest, held) =
            crate::data::dataset::held_out_indices(labels, self.num_classes, take, seed);
        (self.select(&rest), self.select(&held))
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// A warning for the files left out, naming a few; `None` when none were.
    pub fn skipped_warning(&self) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        let shown: Vec<String> = self
            .skipped
            .iter()
            .take(3)
            .map(|p| p.display().to_string())
            .collect();
        Some(format!(
            "warning: {} skipped {} files that are not .jpg/.jpeg/.png images ({}{})",
            self.dir.display(),
            self.skipped.len(),
            shown.join(", "),
            if self.skipped.len() > 3 { ", ..." } else { "" }
        ))
    }
}

fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>, FolderError> {
    if !dir.is_dir() {
        return Err(FolderError::Missing { dir: dir.into() });
    }
    let mut out = Vec::new();
    for entry in read_dir(dir)? {
        let path = entry.path();
        if path.is_dir() && !hidden(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The image files under `dir` (recursively, as `ImageFolder` walks) and the other files.
fn files_under(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), FolderError> {
    let (mut images, mut others) = (Vec::new(), Vec::new());
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in read_dir(&d)? {
            let path = entry.path();
            if hidden(&path) {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if is_image_name(&path) {
                images.push(path);
            } else {
                others.push(path);
            }
        }
    }
    others.sort();
    Ok((images, others))
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, FolderError> {
    let io = |source| FolderError::Io {
        path: dir.into(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)
}

/// Dot files (`.DS_Store`, editors' backups) are not data.
fn hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

pub fn is_image_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        IMAGE_EXTENSIONS.contains(&e.as_str())
    })
}

fn abbreviate(classes: &[String]) -> String {
    let shown: Vec<&str> = classes.iter().take(5).map(String::as_str).collect();
    let more = classes.len().saturating_sub(5);
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Compares a run's recorded class list with the folder's now: any difference would change
/// what the model's outputs mean.
pub fn check_classes(
    recorded: &[String],
    found: &[String],
    file: &Path,
    dir: &Path,
) -> Result<(), FolderError> {
    if recorded == found {
        return Ok(());
    }
    let gone: Vec<&String> = recorded.iter().filter(|c| !found.contains(c)).collect();
    let new: Vec<&String> = found.iter().filter(|c| !recorded.contains(c)).collect();
    let difference = match (gone.is_empty(), new.is_empty()) {
        (true, true) => "the same names in another order".to_string(),
        _ => format!(
            "{}{}",
            if gone.is_empty() {
                String::new()
            } else {
                format!("missing {gone:?} ")
            },
            if new.is_empty() {
                String::new()
            } else {
                format!("new {new:?}")
            }
        ),
    };
    Err(FolderError::ClassesChanged {
        file: file.into(),
        dir: dir.into(),
        recorded: recorded.len(),
        found: found.len(),
        difference: difference.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 classes of 100 files each, in folder order (by class).
    fn listing() -> ImageFolder {
        ImageFolder {
            dir: "train".into(),
            files: (0..1000)
                .map(|i| PathBuf::from(format!("{}/{i}.png", i / 100)))
                .collect(),
            labels: (0..1000).map(|i| i / 100).collect(),
            num_classes: 10,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn limits_draw_from_every_class_and_subsets_balance() {
        let f = listing();
        // the first 200 would be two classes; a limit draws across all ten
        let s = f.sample(200, 0);
        assert_eq!(s.len(), 200);
        assert!(
            s.class_counts().iter().all(|&c| c > 5),
            "{:?}",
            s.class_counts()
        );
        assert_eq!(s, f.sample(200, 0), "seeded");
        assert_ne!(s, f.sample(200, 1));
        // images keep their labels and the folder's order
        assert!(s.labels.windows(2).all(|w| w[0] <= w[1]));
        for (file, label) in s.files.iter().zip(&s.labels) {
            assert!(file.starts_with(label.to_string()));
        }
        assert_eq!(f.sample(5000, 0), f);
        let per_class = f.balanced_subset(|_| 7, 3);
        assert_eq!(per_class.class_counts(), vec![7; 10]);
    }

    #[test]
    fn changed_classes_are_named() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (rec, file, dir) = (
            names(&["a", "b", "c"]),
            Path::new("classes.json"),
            Path::new("train"),
        );
        assert!(check_classes(&rec, &rec, file, dir).is_ok());
        let e = check_classes(&rec, &names(&["a", "c", "d"]), file, dir)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing [\"b\"]") && e.contains("new [\"d\"]") && e.contains("3 classes"),
            "{e}"
        );
    }
}
