//! Checkpoints in safetensors: parameters by path name, optional extra tensors (optimizer
//! moments) and string metadata. Written atomically (temp file + rename), so a killed process
//! leaves either the old file or the new one, never half of one.

use crate::device::{tensor_from_slice, Dev};
use crate::model::params::{HasParams, ParamMut};
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
    /// A file the user gave (an import, `eval --model FILE`) that is no safetensors file
    /// this engine reads: the advice is about the file, not about a stage.
    #[error("{path} is not a safetensors file of float32 tensors that this engine reads ({reason}): {hint}")]
    Unreadable {
        path: PathBuf,
        reason: String,
        hint: String,
    },
    #[error("{path} is not a regular file (a directory, FIFO, socket or device): {hint}")]
    NotAFile { path: PathBuf, hint: String },
    #[error("{path}: tensor {tensor} has {count} values that are not finite (NaN or infinite): a diverged or damaged model; export it again from a model that trained")]
    NonFinite {
        path: PathBuf,
        tensor: String,
        count: usize,
    },
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
    let data = safetensors::serialize(views, &Some(meta))
        .map_err(|e| naming(path, std::io::Error::other(e)))?;
    write_atomic(path, &data)
}

/// An error writing `path` that says which file (the OS's own message names none).
fn naming(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
}

/// Writes a file so that readers never see a partial one: a temporary file in the same
/// directory, flushed to disk, renamed over `path`, and the directory entry flushed too. If
/// anything fails (a full disk) the temporary file is removed and `path` keeps its old content.
/// Errors name `path`. Among ranks training together only rank 0 writes
/// ([`crate::collective::is_writer`]); on the others this does nothing.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if !crate::collective::is_writer() {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs_err::create_dir_all(dir).map_err(|e| naming(path, e))?;
    let tmp = temporary(dir, path, "tmp");
    let written = write_synced(&tmp, data).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(naming(path, e));
    }
    // The rename is only durable once the directory is; a failure here loses nothing that a
    // crash would not, so it is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// [`write_atomic`] that never replaces: `false` if `path` already exists (then nothing is
/// written); errors name `path`. The file appears complete, by a hard link from a synced temporary, which fails
/// when the name is taken however many processes race for it.
pub fn write_new_atomic(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = temporary(dir, path, "tmp");
    let linked = write_synced(&tmp, data).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(naming(path, e)),
    }
}

/// A temporary's name beside `path`, unique to this process and write: two threads of one
/// process writing the same file must not share one.
fn temporary(dir: &Path, path: &Path, kind: &str) -> std::path::PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(
        ".{}.{kind}-{}-{n}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ))
}

fn write_synced(tmp: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(tmp)?;
    if crate::faults::crash_in_this_write() {
        f.write_all(&data[..data.len() / 2])?;
        f.sync_all()?;
        crate::faults::die();
    }
    f.write_all(data)?;
    f.sync_all()
}

/// Removes temporary files that a process killed in the middle of [`write_atomic`] left in
/// `dir` (they never replaced anything, so nothing is lost).
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub fn read(path: &Path, hint: &str) -> Result<Checkpoint, CheckpointError> {
    // reading a FIFO would wait for a writer forever
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return Err(CheckpointError::NotAFile {
                path: path.into(),
                hint: hint.into(),
            });
        }
    }
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
    parse(path, &bytes)
}

/// A checkpoint from a file the user gave (an import, a model to evaluate): errors advise
/// about the file (`hint`: what to give instead), and a tensor with NaN or infinite values is
/// refused, naming it.
pub fn read_user(path: &Path, hint: &str) -> Result<Checkpoint, CheckpointError> {
    let ck = read(path, hint).map_err(|e| match e {
        CheckpointError::Corrupt { path, reason } => CheckpointError::Unreadable {
            path,
            reason,
            hint: hint.into(),
        },
        other => other,
    })?;
    refuse_non_finite(path, ck)
}

/// A user's checkpoint as training may take it: refused when a tensor holds NaN or infinity.
pub fn refuse_non_finite(path: &Path, ck: Checkpoint) -> Result<Checkpoint, CheckpointError> {
    for (name, (_, data)) in &ck.tensors {
        let count = data.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            return Err(CheckpointError::NonFinite {
                path: path.into(),
                tensor: name.clone(),
                count,
            });
        }
    }
    Ok(ck)
}

/// A checkpoint from a file's contents; `path` names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.into(),
        reason,
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
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
    /// other tensors (optimizer state) under `optim.`; every model parameter must be there
    /// with its exact shape.
    pub fn load_into(
        &self,
        model: &mut impl HasParams,
        prefix: &str,
        dev: &Dev,
    ) -> Result<(), CheckpointError> {
        self.load_matching(model, prefix, dev, |_| true, |k| !k.starts_with("optim."))
    }

    /// Loads the parameters of `model` whose names pass `wanted` from tensors named
    /// `prefix + name`, leaving the others untouched. Each wanted parameter must be in the
    /// file with its exact shape, and each file tensor that `is_param` says is a parameter must
    /// be a wanted one: a file written for another network is refused, not half loaded.
    pub fn load_matching(
        &self,
        model: &mut impl HasParams,
        prefix: &str,
        dev: &Dev,
        wanted: impl Fn(&str) -> bool,
        is_param: impl Fn(&str) -> bool,
    ) -> Result<(), CheckpointError> {
        let mut problems = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        let mut loaded = Vec::new();
        for (name, p) in model.named_params_mut() {
            if !wanted(&name) {
                continue;
            }
            let key = format!("{prefix}{name}");
            names.insert(key.clone());
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
            loaded.push((p, shape, data));
        }
        let extra: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix) && is_param(k) && !names.contains(*k))
            .take(5)
            .collect();
        if problems.is_empty() && !extra.is_empty() {
            problems.push(format!(
                "the file has parameters the model lacks: {extra:?}"
            ));
        }
        if !problems.is_empty() {
            let n = problems.len();
            problems.truncate(5);
            let more = if n > 5 {
                format!(" (and {} more)", n - 5)
            } else {
                String::new()
            };
            return Err(CheckpointError::Mismatch {
                path: self.path.clone(),
                problems: problems.join("; ") + &more,
            });
        }
        // Nothing changes unless everything fits.
        for (p, shape, data) in loaded {
            match p {
                ParamMut::Vector(t) => *t = tensor_from_slice(dev, data, (shape[0],)),
                ParamMut::Matrix(t) => *t = tensor_from_slice(dev, data, (shape[0], shape[1])),
            }
        }
        Ok(())
    }
}
