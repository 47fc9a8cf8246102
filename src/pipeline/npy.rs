//! Data sets of your own as NumPy `.npy` arrays (format versions 1 to 3, C order).

use std::path::Path;

use crate::core::data::Dataset;
use crate::core::Tensor;
use crate::Result;

use super::{Data, PipelineError};

/// An array read from a `.npy` file: its shape and its values as f64.
struct Array {
    shape: Vec<usize>,
    values: Vec<f64>,
    /// Whether the values were bytes (u1), which images scale by 1/255.
    bytes: bool,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> crate::Error {
    PipelineError::Data(format!("{}: {reason}", path.display())).into()
}

/// Reads a `.npy` file of floats (f4, f8), unsigned (u1, u2, u4, u8) or signed (i1, i2, i4,
/// i8) numbers, little-endian, C order.
fn read(path: &Path) -> Result<Array> {
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
    Ok(Array {
        shape,
        values,
        bytes: kind == b'u' && size == 1,
    })
}

/// Images `[N, C, H, W]` (or `[N, H, W]`, one channel) as f32; bytes are scaled to `[0, 1]`.
fn images(path: &Path) -> Result<Tensor> {
    let a = read(path)?;
    let mut shape = a.shape.clone();
    if shape.len() == 3 {
        shape.insert(1, 1);
    }
    if shape.len() != 4 || shape[0] == 0 {
        return Err(bad(
            path,
            format!(
                "images of shape {:?}; expected [N, C, H, W] or [N, H, W]",
                a.shape
            ),
        ));
    }
    let scale = if a.bytes { 1.0 / 255.0 } else { 1.0 };
    let v: Vec<f32> = a.values.iter().map(|&x| (x * scale) as f32).collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(bad(
            path,
            format!("value {} at index {i} is not finite", v[i]),
        ));
    }
    crate::core::tensor::from_vec(&shape, v)
}

/// Class labels `[N]`: non-negative integers.
fn labels(path: &Path) -> Result<Vec<usize>> {
    let a = read(path)?;
    if a.shape.len() != 1 {
        return Err(bad(
            path,
            format!("labels of shape {:?}; expected [N]", a.shape),
        ));
    }
    a.values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v < 1e9 {
                Ok(v as usize)
            } else {
                Err(bad(
                    path,
                    format!("label {v} at index {i} is not a class number"),
                ))
            }
        })
        .collect()
}

impl Data {
    /// A data set of your own in a folder of `.npy` arrays: `train_x.npy` and `val_x.npy`
    /// (images `[N, C, H, W]`, or `[N, H, W]` for one channel; f32 or f64 used as they are,
    /// u8 scaled to `[0, 1]`) with `train_y.npy` and `val_y.npy` (integer class labels
    /// `[N]`). The classes are `0..=` the largest label.
    ///
    /// # Errors
    /// A missing or malformed file (naming it), counts that differ between images and labels,
    /// or image shapes that differ between the two sets.
    pub fn from_npy_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let set = |prefix: &str| -> Result<(Tensor, Vec<usize>)> {
            let x = images(&dir.join(format!("{prefix}_x.npy")))?;
            let y = labels(&dir.join(format!("{prefix}_y.npy")))?;
            if x.shape()[0] != y.len() {
                return Err(bad(
                    dir,
                    format!(
                        "{prefix}_x.npy holds {} images but {prefix}_y.npy {} labels",
                        x.shape()[0],
                        y.len()
                    ),
                ));
            }
            Ok((x, y))
        };
        let (tx, ty) = set("train")?;
        let (vx, vy) = set("val")?;
        let classes = ty.iter().chain(&vy).max().map_or(1, |m| m + 1);
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("npy")
            .to_string();
        Self::new(
            &name,
            Dataset::new(tx, ty, classes)?,
            Dataset::new(vx, vy, classes)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 `.npy` file.
    fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let shape = if dims.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        };
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
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

    fn folder(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("slimnet-npy-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_images_and_labels() {
        let d = folder("ok");
        let px: Vec<u8> = (0..2 * 4 * 4).map(|i| (i * 8) as u8).collect();
        std::fs::write(d.join("train_x.npy"), npy("|u1", &[2, 4, 4], &px)).unwrap();
        let y: Vec<u8> = [0i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(d.join("train_y.npy"), npy("<i8", &[2], &y)).unwrap();
        let f: Vec<u8> = (0..16)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        std::fs::write(d.join("val_x.npy"), npy("<f4", &[1, 1, 4, 4], &f)).unwrap();
        std::fs::write(d.join("val_y.npy"), npy("|u1", &[1], &[1])).unwrap();
        let data = Data::from_npy_dir(&d).unwrap();
        assert_eq!(data.input, [1, 1, 4, 4]);
        assert_eq!(
            (
                data.train.len(),
                data.validation.len(),
                data.train.classes()
            ),
            (2, 1, 3)
        );
        let (train_x, train_y) = data.train.load(&[0, 1]).unwrap();
        assert_eq!(train_y, [0, 2]);
        assert!((train_x[[0, 0, 0, 1]] - 8.0 / 255.0).abs() < 1e-7);
        assert_eq!(data.validation.load(&[0]).unwrap().0[[0, 0, 1, 0]], 2.0);

        // a label that is no class, and a count that does not match
        std::fs::write(
            d.join("val_y.npy"),
            npy("<f4", &[1], &(-1f32).to_le_bytes()),
        )
        .unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(
            e.contains("val_y.npy: label -1 at index 0 is not a class number"),
            "{e}"
        );
        std::fs::write(d.join("val_y.npy"), npy("|u1", &[2], &[0, 1])).unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("1 images but val_y.npy 2 labels"), "{e}");
        std::fs::write(d.join("val_x.npy"), b"not npy").unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("val_x.npy: not a .npy file"), "{e}");
        std::fs::write(d.join("val_x.npy"), npy(">f4", &[1, 4, 4], &[0; 64])).unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype `>f4`"), "{e}");
        std::fs::write(d.join("val_x.npy"), npy("<f4", &[1, 4, 4], &[0; 60])).unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("60 data bytes"), "{e}");
        std::fs::remove_dir_all(&d).ok();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("train_x.npy"), "{e}");
    }
}
