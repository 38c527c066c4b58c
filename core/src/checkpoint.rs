//! Checkpoints in safetensors: parameters by path name, optional extra tensors (optimizer
//! moments) and string metadata. Written atomically (temp file + rename), so a killed process
//! leaves either the old file or the new one, never half of one.

use crate::device::Dev;
use crate::model::params::{HasParams, ParamMut};
use dfdx::prelude::*;
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path} not found: {hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("cannot read checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} is corrupt ({reason}); delete it and re-run the stage that writes it"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("checkpoint {path} does not fit the model: {problems}. It was written for another model or split; check model.* and split.* in the config, or use a fresh run directory")]
    Mismatch { path: PathBuf, problems: String },
}

/// Tensors and metadata read from one file.
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: BTreeMap<String, String>,
}

/// Saves every parameter of `model` under its path name, without metadata (a model file).
pub fn save_params(path: &Path, model: &impl HasParams) -> std::io::Result<()> {
    save(path, &params_of(model), &BTreeMap::new())
}

/// Writes `tensors` to `path` via a temporary file in the same directory.
pub fn save(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    metadata: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, (shape, data))| {
            (
                n.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                TensorView::new(StDtype::F32, s.clone(), b).expect("sizes agree"),
            )
        })
        .collect();
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let data = safetensors::serialize(views, &Some(meta)).map_err(std::io::Error::other)?;
    write_atomic(path, &data)
}

/// Writes a file so that readers never see a partial one.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, data)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn read(path: &Path, hint: &str) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CheckpointError::Missing {
                path: path.into(),
                hint: hint.into(),
            }
        } else {
            CheckpointError::Io {
                path: path.into(),
                source,
            }
        }
    })?;
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.into(),
        reason,
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != StDtype::F32 {
            return Err(corrupt(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(Checkpoint {
        path: path.into(),
        tensors,
        metadata,
    })
}

/// Every parameter of `model` by name, as tensors for [`save`].
pub fn params_of(model: &impl HasParams) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, (p.shape(), p.to_vec())))
        .collect()
}

impl Checkpoint {
    /// Loads every parameter of `model` from tensors named `prefix + name`. The file may hold
    /// other tensors (optimizer state) under other prefixes; every model parameter must be there
    /// with its exact shape.
    pub fn load_into(
        &self,
        model: &mut impl HasParams,
        prefix: &str,
        dev: &Dev,
    ) -> Result<(), CheckpointError> {
        let mut problems = Vec::new();
        let mut expected = 0;
        for (name, p) in model.named_params_mut() {
            expected += 1;
            let key = format!("{prefix}{name}");
            let Some((shape, data)) = self.tensors.get(&key) else {
                problems.push(format!("{key} is missing"));
                continue;
            };
            let want = p.as_ref().shape();
            if *shape != want {
                problems.push(format!(
                    "{key} has shape {shape:?} in the file but {want:?} in the model"
                ));
                continue;
            }
            match p {
                ParamMut::Vector(t) => *t = dev.tensor_from_vec(data.clone(), (shape[0],)),
                ParamMut::Matrix(t) => *t = dev.tensor_from_vec(data.clone(), (shape[0], shape[1])),
            }
        }
        let present = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix) && !k.starts_with("optim."))
            .count();
        if problems.is_empty() && present > expected {
            let names: std::collections::BTreeSet<String> = model
                .named_params()
                .into_iter()
                .map(|(n, _)| format!("{prefix}{n}"))
                .collect();
            let extra: Vec<&String> = self
                .tensors
                .keys()
                .filter(|k| {
                    k.starts_with(prefix) && !k.starts_with("optim.") && !names.contains(*k)
                })
                .take(5)
                .collect();
            problems.push(format!(
                "the file has parameters the model lacks: {extra:?}"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            let n = problems.len();
            problems.truncate(5);
            let more = if n > 5 {
                format!(" (and {} more)", n - 5)
            } else {
                String::new()
            };
            Err(CheckpointError::Mismatch {
                path: self.path.clone(),
                problems: problems.join("; ") + &more,
            })
        }
    }
}
