//! Listing an image folder in the ImageNet layout (`train/<class>/*.jpg`, `val/<class>/...`):
//! classes are the sorted subdirectories of `train/` (torchvision's `ImageFolder` order), and
//! `val/` is read with the same class list, so a class missing from `val/` never shifts the
//! labels of the others.

use std::path::{Path, PathBuf};

use crate::data::shape::ImageShape;

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
    #[error("{dir} links to {target}, which holds the class directories themselves: a class would take every class's images. Remove the link")]
    ClassLoop { dir: PathBuf, target: PathBuf },
    #[error("stopped by {signal} while listing {dir}; nothing was written: run the command again")]
    Interrupted { signal: &'static str, dir: PathBuf },
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
    /// Files in the class directories that are not images by their extension (or not
    /// regular files): left out.
    pub skipped: Vec<PathBuf>,
    /// Directory links left out: loops, second ways into a directory, links into another
    /// class.
    pub links_not_followed: Vec<PathBuf>,
    /// Image files reached a second time through links: counted once.
    pub duplicates: Vec<PathBuf>,
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
            links_not_followed: Vec::new(),
            duplicates: Vec::new(),
        };
        let mut seen = std::collections::HashSet::new();
        let split_real = dir.canonicalize().map_err(|source| FolderError::Io {
            path: dir.into(),
            source,
        })?;
        for (label, class) in classes.iter().enumerate() {
            let class_dir = dir.join(class);
            if !class_dir.is_dir() {
                if is_train {
                    return Err(FolderError::Missing { dir: class_dir });
                }
                continue;
            }
            let Walk {
                mut images,
                others,
                links,
                duplicates,
            } = files_under(&class_dir, &split_real, &mut seen)?;
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
            out.links_not_followed.extend(links);
            out.duplicates.extend(duplicates);
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
            links_not_followed: self.links_not_followed.clone(),
            duplicates: self.duplicates.clone(),
        }
    }

    /// A class-balanced subset, drawn as [`crate::data::Dataset::balanced_subset`] draws one.
    pub fn balanced_subset(&self, keep: impl Fn(usize) -> usize, seed: u64) -> ImageFolder {
        let labels = self.labels.iter().map(|&l| l as usize);
        let indices = crate::data::subset::balanced_indices(labels, self.num_classes, keep, seed);
        self.select(&indices)
    }

    /// Splits off a class-balanced hold-out, as [`crate::data::Dataset::hold_out`] does:
    /// (the rest, the hold-out).
    pub fn hold_out(&self, take: impl Fn(usize) -> usize, seed: u64) -> (ImageFolder, ImageFolder) {
        let labels = self.labels.iter().map(|&l| l as usize);
        let (rest, held) =
            crate::data::subset::held_out_indices(labels, self.num_classes, take, seed);
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
        let shown = |paths: &[PathBuf]| {
            let names: Vec<String> = paths
                .iter()
                .take(3)
                .map(|p| p.display().to_string())
                .collect();
            format!(
                "{}{}",
                names.join(", "),
                if paths.len() > 3 { ", ..." } else { "" }
            )
        };
        let mut parts = Vec::new();
        if !self.skipped.is_empty() {
            parts.push(format!(
                "skipped {} files that are not .jpg/.jpeg/.png images ({})",
                self.skipped.len(),
                shown(&self.skipped)
            ));
        }
        if !self.links_not_followed.is_empty() {
            parts.push(format!(
                "did not follow {} directory links that loop, lead to a directory already listed, or into another class ({})",
                self.links_not_followed.len(),
                shown(&self.links_not_followed)
            ));
        }
        if !self.duplicates.is_empty() {
            parts.push(format!(
                "counted {} images reached twice through links once ({})",
                self.duplicates.len(),
                shown(&self.duplicates)
            ));
        }
        (!parts.is_empty()).then(|| format!("warning: {} {}", self.dir.display(), parts.join("; ")))
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

/// What one class directory holds, walked as `ImageFolder` walks (links followed).
#[derive(Default)]
struct Walk {
    images: Vec<PathBuf>,
    others: Vec<PathBuf>,
    /// Directory links not followed: to a directory already walked (a loop, or a second way
    /// into the same images), or out of this class into another.
    links: Vec<PathBuf>,
    /// Image files reached a second time (hard links, links to files): counted once.
    duplicates: Vec<PathBuf>,
}

/// A file's identity: the same file however it is reached.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// The files under `class_dir` (recursively). `split_real` (train/ or val/, links resolved):
/// a link from one class into another would give that class's images this class's label, so
/// it is not followed; `seen`: the image files already listed in this split.
fn files_under(
    class_dir: &Path,
    split_real: &Path,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> Result<Walk, FolderError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FolderError::Io { path, source }
    };
    let class_real = class_dir.canonicalize().map_err(io(class_dir))?;
    if split_real.starts_with(&class_real) {
        return Err(FolderError::ClassLoop {
            dir: class_dir.into(),
            target: class_real,
        });
    }
    let mut walk = Walk::default();
    let mut walked = std::collections::HashSet::new();
    walked.insert(identity(
        &std::fs::metadata(class_dir).map_err(io(class_dir))?,
    ));
    let mut pending = vec![class_dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        if let Some(signal) = crate::interrupt::requested() {
            return Err(FolderError::Interrupted {
                signal: signal.name(),
                dir: class_dir.into(),
            });
        }
        let entries = read_dir(&d)?;
        crate::faults::after_dir_listed();
        for entry in entries {
            let path = entry.path();
            if hidden(&path) {
                continue;
            }
            // a dangling link is a file that is not an image: listed with the others
            let Ok(meta) = std::fs::metadata(&path) else {
                walk.others.push(path);
                continue;
            };
            if meta.is_dir() {
                let real = path.canonicalize().map_err(io(&path))?;
                let into_other_class =
                    real.starts_with(split_real) && !real.starts_with(&class_real);
                if into_other_class || !walked.insert(identity(&meta)) {
                    walk.links.push(path);
                } else {
                    pending.push(path);
                }
            } else if !meta.is_file() {
                walk.others.push(path); // a FIFO, socket or device is never read
            } else if !is_image_name(&path) {
                walk.others.push(path);
            } else if seen.insert(identity(&meta)) {
                walk.images.push(path);
            } else {
                walk.duplicates.push(path);
            }
        }
    }
    walk.others.sort();
    walk.links.sort();
    walk.duplicates.sort();
    Ok(walk)
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
            links_not_followed: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    /// train/{a,b} with `n` (empty) .png files each.
    fn two_classes(n: usize) -> (tempfile::TempDir, PathBuf, Vec<String>) {
        let tmp = tempfile::tempdir().unwrap();
        let train = tmp.path().join("train");
        for class in ["a", "b"] {
            std::fs::create_dir_all(train.join(class)).unwrap();
            for i in 0..n {
                std::fs::write(train.join(class).join(format!("{i}.png")), b"").unwrap();
            }
        }
        (tmp, train, vec!["a".into(), "b".into()])
    }

    #[test]
    fn link_loops_end_and_are_named() {
        let (_tmp, train, classes) = two_classes(3);
        use std::os::unix::fs::symlink;
        // two `..` links (the reported hang), a link to itself, a link to its own class
        symlink("..", train.join("a/up")).unwrap();
        std::fs::create_dir(train.join("a/sub")).unwrap();
        symlink("..", train.join("a/sub/up")).unwrap();
        symlink(".", train.join("a/sub/here")).unwrap();
        let f = ImageFolder::scan(&train, &classes, true).unwrap();
        assert_eq!(f.class_counts(), vec![3, 3], "{:?}", f.files);
        assert_eq!(f.links_not_followed.len(), 3, "{:?}", f.links_not_followed);
        let w = f.skipped_warning().unwrap();
        assert!(w.contains("did not follow 3 directory links"), "{w}");
    }

    #[test]
    fn a_link_into_another_class_or_the_split_adds_no_images() {
        let (_tmp, train, classes) = two_classes(3);
        use std::os::unix::fs::symlink;
        // the reported case: 300 images became 12,350, all in one class
        symlink("../b", train.join("a/to-b")).unwrap();
        let f = ImageFolder::scan(&train, &classes, true).unwrap();
        assert_eq!(f.class_counts(), vec![3, 3]);
        assert_eq!(f.links_not_followed, vec![train.join("a/to-b")]);
        // a class that is a link to train/ itself is refused, naming it
        symlink(".", train.join("c")).unwrap();
        let classes3 = list_classes(train.parent().unwrap()).unwrap();
        let e = ImageFolder::scan(&train, &classes3, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds the class directories themselves"), "{e}");
    }

    #[test]
    fn a_file_reached_twice_counts_once_and_a_fifo_is_never_opened() {
        let (_tmp, train, classes) = two_classes(2);
        std::fs::hard_link(train.join("a/0.png"), train.join("a/again.png")).unwrap();
        std::os::unix::fs::symlink(train.join("a/1.png"), train.join("b/link.png")).unwrap();
        let fifo = train.join("a/pipe.png");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let f = ImageFolder::scan(&train, &classes, true).unwrap();
        assert_eq!(f.class_counts(), vec![2, 2]);
        assert_eq!(f.duplicates.len(), 2, "{:?}", f.duplicates);
        assert_eq!(f.skipped, vec![fifo]);
        let w = f.skipped_warning().unwrap();
        assert!(w.contains("counted 2 images reached twice"), "{w}");
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
