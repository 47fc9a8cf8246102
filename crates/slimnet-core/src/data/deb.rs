//! Files that Debian packages carry, fetched into the data cache without root: the system's
//! copy when the package is installed, else `apt-get download` and `dpkg-deb -x` into
//! [`cache_dir`](super::cache_dir). Every file's SHA-256 is checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

fn sha256_file(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!("{:x}", Sha256::digest(&bytes)))
}

/// Whether every `(name, sha256)` of `files` is in `dir` with its digest.
pub(crate) fn verified(dir: &Path, files: &[(&str, &str)]) -> bool {
    files
        .iter()
        .all(|(f, sum)| sha256_file(&dir.join(f)).as_deref() == Some(*sum))
}

/// Copies `files` from `src` into `dir` after checking their digests (each written to a
/// temporary name first, then renamed, so a cache never holds half a file).
pub(crate) fn install_checked(
    src: &Path,
    dir: &Path,
    files: &[(&str, &str)],
    how: &str,
) -> Result<()> {
    for (f, sum) in files {
        let from = src.join(f);
        let got = sha256_file(&from).ok_or_else(|| Error::Data {
            path: from.display().to_string(),
            reason: format!("missing after {how}"),
        })?;
        if got != *sum {
            return Err(Error::Data {
                path: from.display().to_string(),
                reason: format!("SHA-256 {got}, expected {sum} (fetched by {how})"),
            });
        }
        let to = dir.join(f);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = dir.join(format!("{f}.tmp"));
        std::fs::copy(&from, &tmp)?;
        std::fs::rename(&tmp, to)?;
    }
    Ok(())
}

/// Makes sure `files` (paths relative to `system_dir`, with their SHA-256) of Debian package
/// `package` are available and returns their folder: `system_dir` when the package is
/// installed, else `cache_dir()/cache_name`, filled on first use by `apt-get download` and
/// `dpkg-deb -x`. `what` names the data in messages.
///
/// # Errors
/// When `apt-get` or `dpkg-deb` is missing or fails (the message gives the commands, and the
/// `apt-get install` that would do instead), or a digest does not match.
pub(crate) fn fetch_deb_files(
    package: &str,
    system_dir: &str,
    files: &[(&str, &str)],
    cache_name: &str,
    what: &str,
) -> Result<PathBuf> {
    let system = PathBuf::from(system_dir);
    if verified(&system, files) {
        return Ok(system);
    }
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = super::cache_dir();
    let dir = root.join(cache_name);
    if verified(&dir, files) {
        return Ok(dir);
    }
    let work = root.join(format!("deb-{}", cache_name.replace('/', "-")));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let how = format!(
        "`apt-get download {package}` and `dpkg-deb -x` in {} (or install it: \
         `apt-get install {package}`)",
        work.display()
    );
    let run = |cmd: &mut Command, step: &str| -> Result<()> {
        let out = cmd.current_dir(&work).output().map_err(|e| Error::Data {
            path: what.into(),
            reason: format!("could not run {step} ({e}); fetch it with {how}"),
        })?;
        if !out.status.success() {
            return Err(Error::Data {
                path: what.into(),
                reason: format!(
                    "{step} failed: {}; fetch it with {how}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    };
    run(
        Command::new("apt-get").args(["download", package]),
        "apt-get download",
    )?;
    let deb = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| Error::Data {
            path: what.into(),
            reason: format!("apt-get download left no .deb in {}", work.display()),
        })?;
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg("x"),
        "dpkg-deb -x",
    )?;
    let src = work.join("x").join(system_dir.trim_start_matches('/'));
    std::fs::create_dir_all(&dir)?;
    install_checked(&src, &dir, files, &how)?;
    std::fs::remove_dir_all(&work)?;
    Ok(dir)
}
