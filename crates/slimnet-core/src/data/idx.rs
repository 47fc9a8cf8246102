//! The IDX file format of MNIST and Fashion-MNIST (plain or gzip-compressed), read and written.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// Row-major data.
    pub data: Vec<u8>,
}

/// Largest decompressed size accepted (1 GiB), so a corrupt header cannot ask for more.
const MAX_BYTES: u64 = 1 << 30;

/// Parses IDX bytes (gzip-compressed if they start with the gzip magic).
///
/// Only the unsigned-byte element type (0x08) is supported, which is what MNIST uses.
///
/// # Errors
/// A wrong magic number, an unsupported element type, or a size that does not match the header.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<IdxArray> {
    let err = |reason: String| Error::Data {
        path: name.to_string(),
        reason,
    };
    let raw: Vec<u8>;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| err(format!("gzip: {e}")))?;
        if out.len() as u64 > MAX_BYTES {
            return Err(err("decompressed size exceeds 1 GiB".into()));
        }
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(
            "not an IDX file (magic must start with two zero bytes)".into(),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(err(format!(
            "element type 0x{:02x}, only unsigned bytes (0x08) are supported",
            bytes[2]
        )));
    }
    let nd = bytes[3] as usize;
    if nd == 0 || bytes.len() < 4 + 4 * nd {
        return Err(err(format!("header of {nd} dimensions is truncated")));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("dimensions {dims:?} overflow")))?;
    let body = &bytes[4 + 4 * nd..];
    if body.len() != n {
        return Err(err(format!(
            "header {dims:?} implies {n} bytes of data, the file has {}",
            body.len()
        )));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Reads an IDX file.
///
/// # Errors
/// I/O errors and those of [`parse_idx`].
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Data {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_idx(&bytes, &path.display().to_string())
}

impl IdxArray {
    /// The IDX bytes of the array (unsigned bytes, uncompressed).
    ///
    /// # Errors
    /// When the dimensions do not multiply to the data's length, or there are more than 255 of
    /// them or one does not fit the format's 32 bits.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bad = |reason: String| Error::Data {
            path: "IDX array".into(),
            reason,
        };
        let count = self.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if count != Some(self.data.len()) {
            return Err(bad(format!(
                "dims {:?} do not hold {} bytes",
                self.dims,
                self.data.len()
            )));
        }
        let rank = u8::try_from(self.dims.len()).map_err(|_| bad("over 255 dims".into()))?;
        let mut out = vec![0, 0, 0x08, rank];
        for &d in &self.dims {
            let d = u32::try_from(d).map_err(|_| bad(format!("dim {d} over 32 bits")))?;
            out.extend(d.to_be_bytes());
        }
        out.extend_from_slice(&self.data);
        Ok(out)
    }
}

/// Writes an IDX file (uncompressed), through a temporary name so that the path never holds
/// half a file.
///
/// # Errors
/// As [`IdxArray::to_bytes`], and I/O errors.
pub fn write_idx(path: impl AsRef<Path>, array: &IdxArray) -> Result<()> {
    let path = path.as_ref();
    let bytes = array.to_bytes()?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_it_reads() {
        let a = IdxArray {
            dims: vec![2, 3, 1],
            data: vec![1, 2, 3, 4, 5, 255],
        };
        let dir = std::env::temp_dir().join(format!("slimnet-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.idx");
        write_idx(&path, &a).unwrap();
        assert_eq!(read_idx(&path).unwrap(), a);
        std::fs::remove_dir_all(&dir).unwrap();
        let short = IdxArray {
            dims: vec![2, 2],
            data: vec![0; 3],
        };
        assert!(short.to_bytes().is_err());
    }

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    #[test]
    fn parses_plain_and_gzip() {
        let b = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let a = parse_idx(&b, "t").unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b).unwrap();
        assert_eq!(parse_idx(&gz.finish().unwrap(), "t").unwrap(), a);
    }

    #[test]
    fn rejects_bad_headers_and_sizes() {
        let good = idx(&[2, 3], &[0; 6]);
        let mut bad_magic = good.clone();
        bad_magic[0] = 1;
        let mut bad_type = good.clone();
        bad_type[2] = 0x0d;
        for (b, needle) in [
            (bad_magic, "magic"),
            (bad_type, "element type"),
            (idx(&[2, 3], &[0; 5]), "implies 6 bytes"),
            (idx(&[2, 3], &[0; 7]), "implies 6 bytes"),
            (vec![0, 0, 8, 3, 0, 0], "truncated"),
            (idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), "overflow"),
        ] {
            let e = parse_idx(&b, "f").unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
