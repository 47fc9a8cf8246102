//! NumPy `.npy` arrays (format versions 1 to 3, little-endian numbers, C order), as data sets
//! of one's own and the data files of Python packages ship them.

use std::path::Path;

use crate::error::{Error, Result};

/// An array read from a `.npy` file: its shape and its values as f64.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NpyArray {
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The values in C order.
    pub values: Vec<f64>,
    /// Whether the values were bytes (`u1`), which images scale by 1/255.
    pub bytes: bool,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Data {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A version-1 `.npy` file holding `data`, the raw little-endian (or single-byte) values of
/// dtype `descr` (e.g. `"<f4"`, `"|u1"`, `"<i8"`) in C order with shape `shape`. The bytes are
/// written as given: a length that does not match the shape makes a file [`read`] rejects.
///
/// ```
/// use slimnet_core::data::npy;
/// let values = [1.5f32, -2.0];
/// let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
/// let file = std::env::temp_dir().join(format!("npy-doc-{}.npy", std::process::id()));
/// std::fs::write(&file, npy::encode("<f4", &[1, 2], &bytes))?;
/// let a = npy::read(&file)?;
/// assert_eq!((a.shape, a.values), (vec![1, 2], vec![1.5, -2.0]));
/// # std::fs::remove_file(&file)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: String = shape.iter().map(|d| format!("{d},")).collect();
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    // the header, with its 10 leading bytes and the newline, pads to a multiple of 64
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Reads a `.npy` file (format versions 1 to 3) of floats (f4, f8), unsigned (u1, u2, u4, u8)
/// or signed (i1, i2, i4, i8) numbers, little-endian, C order.
///
/// # Errors
/// A file that cannot be read or is not such an array (the message names the file and what is
/// wrong: the magic, the version, the header, the dtype, the length).
pub fn read(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (no \\x93NUMPY magic)"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "truncated or non-text header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[at..].trim_start().strip_prefix(':')?.trim_start())
    };
    let descr = field("descr")
        .and_then(|d| d.strip_prefix('\'')?.split('\'').next())
        .ok_or_else(|| bad(path, "header without descr"))?;
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err(bad(
            path,
            "Fortran-order arrays are not supported; save with C order",
        ));
    }
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad(path, "header without shape"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(path, format!("bad shape ({shape_text})")))?;
    let (kind, size) = match descr.as_bytes() {
        [b'<' | b'|' | b'=', k, n] if n.is_ascii_digit() => (*k, (n - b'0') as usize),
        _ => {
            return Err(bad(
                path,
                format!("unsupported dtype `{descr}` (little-endian numbers only)"),
            ))
        }
    };
    let count: usize = shape.iter().product();
    let data = &bytes[start + len..];
    if data.len() != count * size {
        return Err(bad(
            path,
            format!(
                "{} data bytes for shape {shape:?} of `{descr}` ({} expected)",
                data.len(),
                count * size
            ),
        ));
    }
    let values: Vec<f64> = match (kind, size) {
        (b'f', 4) => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")) as f64)
            .collect(),
        (b'f', 8) => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect(),
        (b'u', 1) => data.iter().map(|&b| b as f64).collect(),
        (b'i', 1) => data.iter().map(|&b| b as i8 as f64).collect(),
        (b'u', 2) => data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as f64)
            .collect(),
        (b'i', 2) => data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
            .collect(),
        (b'u', 4) => data
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")) as f64)
            .collect(),
        (b'i', 4) => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as f64)
            .collect(),
        (b'u', 8) => data
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8")) as f64)
            .collect(),
        (b'i', 8) => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8")) as f64)
            .collect(),
        _ => return Err(bad(path, format!("unsupported dtype `{descr}`"))),
    };
    Ok(NpyArray {
        shape,
        values,
        bytes: kind == b'u' && size == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_floats_and_names_what_is_wrong() {
        let path =
            std::env::temp_dir().join(format!("slimnet-npy-core-{}.npy", std::process::id()));
        let v = [1.5f32, -2.0, f32::INFINITY, 0.25, 7.0, 8.0];
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&path, encode("<f4", &[2, 3], &data)).unwrap();
        let a = read(&path).unwrap();
        assert_eq!(a.shape, [2, 3]);
        assert_eq!(a.values, v.map(f64::from));
        assert!(!a.bytes);
        std::fs::write(&path, encode("|u1", &[2], &[3, 255])).unwrap();
        let a = read(&path).unwrap();
        assert_eq!(
            (a.shape, a.values, a.bytes),
            (vec![2], vec![3.0, 255.0], true)
        );
        for (bytes, want) in [
            (b"nope".to_vec(), "no \\x93NUMPY magic"),
            (encode("<f4", &[2, 3], &data[..20]), "20 data bytes"),
            (encode(">f4", &[1], &data[..4]), "unsupported dtype `>f4`"),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("slimnet-npy-core"), "{e}");
        }
        std::fs::remove_file(&path).ok();
        assert!(read(&path).is_err());
    }
}
