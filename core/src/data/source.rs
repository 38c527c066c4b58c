//! Choosing a dataset by name (as written in a config) and loading it from wherever it lives.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cifar::{load_cifar10, load_cifar100};
use super::dataset::DataSplit;
use super::embedded::embedded_mnist;
use super::error::DataError;
use super::fetch::KNOWN;
use super::idx::load_idx_split;
use super::shape::ImageShape;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    EmbeddedMnist,
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
    /// An image folder in the ImageNet layout at `data.path`, read as the training goes.
    Folder,
}

impl DatasetName {
    pub const ALL: [DatasetName; 6] = [
        DatasetName::EmbeddedMnist,
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::Folder,
    ];

    /// The config spelling, also the cache subdirectory and the `incubator data fetch` argument.
    pub fn as_str(&self) -> &'static str {
        match self {
            DatasetName::EmbeddedMnist => "embedded-mnist",
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Folder => "folder",
        }
    }
}

impl DatasetName {
    /// The images' shape and the number of classes (what `load` returns has exactly these);
    /// `None` for an image folder, whose classes are its directories and whose crop size is
    /// the config's.
    pub fn fixed_shape(&self) -> Option<ImageShape> {
        let (side, channels, num_classes) = match self {
            DatasetName::EmbeddedMnist | DatasetName::Mnist | DatasetName::FashionMnist => {
                (28, 1, 10)
            }
            DatasetName::Cifar10 => (32, 3, 10),
            DatasetName::Cifar100 => (32, 3, 100),
            DatasetName::Folder => return None,
        };
        Some(ImageShape {
            height: side,
            width: side,
            channels,
            num_classes,
        })
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DatasetName {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        DatasetName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| DataError::UnknownDataset {
                name: s.to_string(),
                known: DatasetName::ALL.map(|n| n.as_str()).join(", "),
            })
    }
}

/// Loads `name` from `path` if given, else from where `incubator data fetch` puts it
/// (`cache_dir/<name>/`). The embedded subset ignores both; an image folder is not loaded into
/// memory (see [`super::folder::FolderSplit`]).
pub fn load(
    name: &DatasetName,
    path: Option<&Path>,
    cache_dir: &Path,
) -> Result<DataSplit, DataError> {
    match name {
        DatasetName::EmbeddedMnist => embedded_mnist(),
        DatasetName::Mnist | DatasetName::FashionMnist => {
            let dir = match path {
                Some(p) => p.to_path_buf(),
                None => {
                    let dir = cache_dir.join(name.as_str());
                    if !dir.is_dir() {
                        return Err(DataError::NotFetched {
                            name: name.to_string(),
                            dir,
                        });
                    }
                    dir
                }
            };
            load_idx_split(&dir, name.as_str(), 10, KNOWN.contains(&name.as_str()))
        }
        DatasetName::Cifar10 | DatasetName::Cifar100 => {
            let dir = path.ok_or_else(|| DataError::NeedsPath {
                name: name.to_string(),
            })?;
            if *name == DatasetName::Cifar10 {
                load_cifar10(dir)
            } else {
                load_cifar100(dir)
            }
        }
        DatasetName::Folder => Err(DataError::NotInMemory {
            name: name.to_string(),
        }),
    }
}

/// Per-channel mean and standard deviation of the training pixels scaled to [0, 1], the
/// constants every reference implementation normalises with.
pub fn mean_std(name: &DatasetName) -> (Vec<f32>, Vec<f32>) {
    match name {
        DatasetName::EmbeddedMnist | DatasetName::Mnist => (vec![0.1307], vec![0.3081]),
        DatasetName::FashionMnist => (vec![0.2860], vec![0.3530]),
        DatasetName::Cifar10 => (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]),
        DatasetName::Cifar100 => (vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762]),
        DatasetName::Folder => (
            super::folder::IMAGENET_MEAN.map(f32::from).to_vec(),
            super::folder::IMAGENET_STD.map(f32::from).to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::tests::{toy, write_split};

    #[test]
    fn names_round_trip_through_serde_and_str() {
        for n in DatasetName::ALL {
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(json, format!("\"{}\"", n.as_str()));
            assert_eq!(serde_json::from_str::<DatasetName>(&json).unwrap(), n);
            assert_eq!(n.as_str().parse::<DatasetName>().unwrap(), n);
        }
        assert_eq!(
            serde_json::from_str::<DatasetName>("\"fashion-mnist\"").unwrap(),
            DatasetName::FashionMnist
        );
        let msg = "mnsit".parse::<DatasetName>().unwrap_err().to_string();
        assert!(
            msg.contains("embedded-mnist, mnist, fashion-mnist, cifar10, cifar100, folder"),
            "{msg}"
        );
    }

    #[test]
    fn unfetched_dataset_says_how_to_fetch() {
        let cache = tempfile::tempdir().unwrap();
        let err = load(&DatasetName::FashionMnist, None, cache.path()).unwrap_err();
        assert!(matches!(err, DataError::NotFetched { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("incubator data fetch fashion-mnist") && msg.contains("data.path"),
            "{msg}"
        );
    }

    #[test]
    fn cifar_without_path_explains_why() {
        let cache = tempfile::tempdir().unwrap();
        let msg = load(&DatasetName::Cifar100, None, cache.path())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("cifar100") && msg.contains("data.path") && msg.contains("registry"),
            "{msg}"
        );
    }

    #[test]
    fn mnist_loads_from_cache_or_path() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("mnist");
        std::fs::create_dir(&dir).unwrap();
        let (train, test) = (toy(6, 4, 4, 10), toy(3, 4, 4, 10));
        write_split(&dir, &train, &test, true);
        let from_cache = load(&DatasetName::Mnist, None, cache.path()).unwrap();
        assert_eq!(
            (from_cache.name.as_str(), &from_cache.train),
            ("mnist", &train)
        );
        let other = tempfile::tempdir().unwrap();
        let from_path = load(&DatasetName::Mnist, Some(&dir), other.path()).unwrap();
        assert_eq!(from_path.test, test);
    }

    #[test]
    fn mean_std_has_one_value_per_channel() {
        for n in DatasetName::ALL {
            let (m, s) = mean_std(&n);
            assert_eq!(m.len(), s.len());
            let c = if matches!(
                n,
                DatasetName::Cifar10 | DatasetName::Cifar100 | DatasetName::Folder
            ) {
                3
            } else {
                1
            };
            assert_eq!(m.len(), c, "{n}");
        }
        assert_eq!(mean_std(&DatasetName::Cifar10).0[2], 0.4465);
        assert_eq!(mean_std(&DatasetName::FashionMnist).1[0], 0.3530);
    }
}
