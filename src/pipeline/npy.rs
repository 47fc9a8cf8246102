//! Data sets of your own as NumPy `.npy` arrays (format versions 1 to 3, C order).

use std::path::Path;

use crate::core::data::npy::read;
use crate::core::data::Dataset;
use crate::core::Tensor;
use crate::Result;

use super::{Data, PipelineError};

fn bad(path: &Path, reason: impl std::fmt::Display) -> crate::Error {
    PipelineError::Data(format!("{}: {reason}", path.display())).into()
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
    use crate::core::data::npy;

    fn folder(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("slimnet-npy-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_images_and_labels() {
        let d = folder("ok");
        let px: Vec<u8> = (0..2 * 4 * 4).map(|i| (i * 8) as u8).collect();
        std::fs::write(d.join("train_x.npy"), npy::encode("|u1", &[2, 4, 4], &px)).unwrap();
        let y: Vec<u8> = [0i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(d.join("train_y.npy"), npy::encode("<i8", &[2], &y)).unwrap();
        let f: Vec<u8> = (0..16)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        std::fs::write(d.join("val_x.npy"), npy::encode("<f4", &[1, 1, 4, 4], &f)).unwrap();
        std::fs::write(d.join("val_y.npy"), npy::encode("|u1", &[1], &[1])).unwrap();
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
            npy::encode("<f4", &[1], &(-1f32).to_le_bytes()),
        )
        .unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(
            e.contains("val_y.npy: label -1 at index 0 is not a class number"),
            "{e}"
        );
        std::fs::write(d.join("val_y.npy"), npy::encode("|u1", &[2], &[0, 1])).unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("1 images but val_y.npy 2 labels"), "{e}");
        std::fs::write(d.join("val_x.npy"), b"not npy").unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("val_x.npy: not a .npy file"), "{e}");
        std::fs::write(
            d.join("val_x.npy"),
            npy::encode(">f4", &[1, 4, 4], &[0; 64]),
        )
        .unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype `>f4`"), "{e}");
        std::fs::write(
            d.join("val_x.npy"),
            npy::encode("<f4", &[1, 4, 4], &[0; 60]),
        )
        .unwrap();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("60 data bytes"), "{e}");
        std::fs::remove_dir_all(&d).ok();
        let e = Data::from_npy_dir(&d).unwrap_err().to_string();
        assert!(e.contains("train_x.npy"), "{e}");
    }
}
