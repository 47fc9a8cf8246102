//! A small interpreter for the pickle opcodes that `torch.save` writes (protocol 2, plus the
//! few protocol 3-4 opcodes that carry the same values), with a whitelist of globals.
//!
//! Nothing is ever executed: a `GLOBAL` outside [`Global`] is an error naming it, and the
//! whitelisted ones are data constructors interpreted here (a tensor is a reference into a
//! storage, to be read later). Every length read from the stream is checked against the bytes
//! left before anything is allocated for it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::{pth_error, PthResult};

/// The element type of a storage (`torch.FloatStorage`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// Element `i` of little-endian `bytes` as f32 (integers exact up to 2^24).
    pub(crate) fn read(self, bytes: &[u8], i: usize) -> f32 {
        let s = self.size();
        let b = &bytes[i * s..(i + 1) * s];
        match self {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            Dtype::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Dtype::BF16 => f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16),
            Dtype::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            Dtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Dtype::I16 => f32::from(i16::from_le_bytes([b[0], b[1]])),
            Dtype::I8 => f32::from(b[0] as i8),
            Dtype::U8 => f32::from(b[0]),
            Dtype::Bool => f32::from(u8::from(b[0] != 0)),
        }
    }
}

/// IEEE half precision to single precision, subnormals and infinities included.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: value f * 2^-24
            let v = f as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// The globals a legacy PyTorch file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Self> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", s) => Global::Storage(Dtype::from_storage(s)?),
            _ => return None,
        })
    }
}

/// A storage named by a persistent id: its key in the file, type and element count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub key: String,
    pub dtype: Dtype,
    pub numel: usize,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A Python value on the pickle machine's stack.
#[derive(Debug, Clone, Default)]
pub(crate) enum Value {
    #[default]
    None,
    Bool(bool),
    Int(i128),
    // floats and bytes take their place on the stack; a state dict never reads them
    Float(#[allow(dead_code)] f64),
    Str(Rc<str>),
    Bytes(#[allow(dead_code)] Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    /// A dict or an `OrderedDict` (both keep insertion order); the flag says which.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>, bool),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// The mark pushed by `MARK`.
    Mark,
}

/// Values are dropped without recursion: a hostile file nesting a million tuples must not
/// overflow the stack when its values are freed.
impl Drop for Value {
    fn drop(&mut self) {
        let mut work = Vec::new();
        self.take_children(&mut work);
        while let Some(mut v) = work.pop() {
            v.take_children(&mut work);
        }
    }
}

impl Value {
    /// Moves the children of a container that nothing else holds into `out`.
    fn take_children(&mut self, out: &mut Vec<Value>) {
        match self {
            Value::Tuple(t) => {
                if let Some(items) = Rc::get_mut(t) {
                    out.extend(items.iter_mut().map(std::mem::take));
                }
            }
            Value::List(l) => {
                if let Some(l) = Rc::get_mut(l) {
                    out.append(l.get_mut());
                }
            }
            Value::Dict(d, _) => {
                if let Some(d) = Rc::get_mut(d) {
                    for (k, v) in d.get_mut().drain(..) {
                        out.push(k);
                        out.push(v);
                    }
                }
            }
            _ => {}
        }
    }

    /// The Python type, for error messages (never the contents: values may be cyclic).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_, true) => "OrderedDict",
            Value::Dict(_, false) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Mark => "mark",
        }
    }

    pub(crate) fn as_usize(&self, what: &str) -> PthResult<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i)
                .map_err(|_| pth_error(format!("{what}: {i} is not a non-negative size"))),
            v => Err(pth_error(format!(
                "{what}: expected an int, got {}",
                v.kind()
            ))),
        }
    }

    pub(crate) fn as_str(&self, what: &str) -> PthResult<Rc<str>> {
        match self {
            Value::Str(s) => Ok(s.clone()),
            v => Err(pth_error(format!(
                "{what}: expected a str, got {}",
                v.kind()
            ))),
        }
    }

    fn usize_tuple(&self, what: &str) -> PthResult<Vec<usize>> {
        match self {
            Value::Tuple(t) => t.iter().map(|v| v.as_usize(what)).collect(),
            v => Err(pth_error(format!(
                "{what}: expected a tuple, got {}",
                v.kind()
            ))),
        }
    }
}

/// Reads one pickle from `bytes` at `*pos`, leaving `*pos` after its `STOP`.
pub(crate) fn load(bytes: &[u8], pos: &mut usize) -> PthResult<Value> {
    let mut m = Machine {
        bytes,
        pos: *pos,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    let v = m.run()?;
    *pos = m.pos;
    Ok(v)
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> PthResult<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                pth_error(format!(
                    "truncated: {n} bytes wanted at offset {}, the file has {}",
                    self.pos,
                    self.bytes.len()
                ))
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> PthResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> PthResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> PthResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> PthResult<String> {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or_else(|| pth_error(format!("unterminated GLOBAL name at offset {}", self.pos)))?;
        let s = String::from_utf8(rest[..n].to_vec())
            .map_err(|_| pth_error(format!("GLOBAL name at offset {} is not UTF-8", self.pos)))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> PthResult<Value> {
        let at = self.pos;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b)
            .map_err(|_| pth_error(format!("string at offset {at} is not UTF-8")))?;
        Ok(Value::Str(Rc::from(s)))
    }

    /// A latin-1 (Python 2 `str`) string.
    fn latin1(&mut self, n: usize) -> PthResult<Value> {
        let s: String = self.take(n)?.iter().map(|&b| char::from(b)).collect();
        Ok(Value::Str(Rc::from(s.as_str())))
    }

    fn bytes_value(&mut self, n: usize) -> PthResult<Value> {
        Ok(Value::Bytes(Rc::from(self.take(n)?)))
    }

    fn pop(&mut self) -> PthResult<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => {
                Err(pth_error(format!("stack underflow at offset {}", self.pos)))
            }
            Some(v) => Ok(v),
        }
    }

    fn top(&mut self) -> PthResult<&Value> {
        match self.stack.last() {
            Some(Value::Mark) | None => {
                Err(pth_error(format!("stack underflow at offset {}", self.pos)))
            }
            Some(v) => Ok(v),
        }
    }

    /// The values above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> PthResult<Vec<Value>> {
        let m = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| pth_error(format!("no MARK before offset {}", self.pos)))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }

    fn memo_get(&self, i: u32) -> PthResult<Value> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| pth_error(format!("memo entry {i} read before it was written")))
    }

    fn memo_put(&mut self, i: u32) -> PthResult<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn tuple(&mut self, n: usize) -> PthResult<()> {
        if self.stack.len() < n
            || self.stack[self.stack.len() - n..]
                .iter()
                .any(|v| matches!(v, Value::Mark))
        {
            return Err(pth_error(format!("stack underflow at offset {}", self.pos)));
        }
        let items = self.stack.split_off(self.stack.len() - n);
        self.stack.push(Value::Tuple(Rc::from(items)));
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> PthResult<()> {
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            v => Err(pth_error(format!("APPEND to a {}", v.kind()))),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> PthResult<()> {
        if !items.len().is_multiple_of(2) {
            return Err(pth_error("SETITEMS with an odd number of values"));
        }
        match self.top()? {
            Value::Dict(d, _) => {
                let mut d = d.borrow_mut();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    dict_set(&mut d, k, v)?;
                }
                Ok(())
            }
            v => Err(pth_error(format!("SETITEM on a {}", v.kind()))),
        }
    }

    fn run(&mut self) -> PthResult<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(pth_error(format!(
                            "pickle protocol {p} at offset {at}, expected 2 to 5"
                        )));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let b = self.take(4)?;
                    let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    self.stack.push(Value::Int(i128::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i128::from(v)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(i128::from(v)));
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement
                    let n = if op == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        self.u32()? as usize
                    };
                    if n > 16 {
                        return Err(pth_error(format!("integer of {n} bytes at offset {at}")));
                    }
                    let b = self.take(n)?;
                    let mut v: i128 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= i128::from(byte) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    let v = self.latin1(n)?;
                    self.stack.push(v);
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.latin1(n)?;
                    self.stack.push(v);
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    let v = self.bytes_value(n)?;
                    self.stack.push(v);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let v = self.bytes_value(n)?;
                    self.stack.push(v);
                }
                b')' => self.stack.push(Value::Tuple(Rc::from(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::from(items)));
                }
                0x85 => self.tuple(1)?,
                0x86 => self.tuple(2)?,
                0x87 => self.tuple(3)?,
                b']' => self.stack.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'}' => self.stack.push(Value::Dict(Rc::default(), false)),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Rc::default(), false));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(u32::from(i))?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    // MEMOIZE
                    let i =
                        u32::try_from(self.memo.len()).map_err(|_| pth_error("memo too large"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    let v = self.memo_get(u32::from(i))?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = Global::lookup(&module, &name).ok_or_else(|| {
                        pth_error(format!(
                            "GLOBAL `{module}.{name}` at offset {at} is not one a state dict uses \
                             (only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and \
                             the torch storage types are allowed; nothing is executed)"
                        ))
                    })?;
                    self.stack.push(Value::Global(g));
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ: a whitelisted callable on an argument tuple
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = call(&f, &args)
                        .map_err(|e| pth_error(format!("at offset {at}: {}", super::reason(&e))))?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD: the state of an OrderedDict (its `_metadata`) is not needed
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_, true) | Value::Tensor(_) => {}
                        v => {
                            return Err(pth_error(format!(
                                "BUILD of a {} at offset {at}",
                                v.kind()
                            )))
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(&pid)
                        .map_err(|e| pth_error(format!("at offset {at}: {}", super::reason(&e))))?;
                    self.stack.push(v);
                }
                other => {
                    return Err(pth_error(format!(
                        "pickle opcode 0x{other:02x} at offset {at} is not one of a state dict"
                    )))
                }
            }
        }
    }
}

/// Keys are kept in order, repeated ones too (a dict that Python wrote has none; the state
/// dict reader rejects them), so that a large dict costs linear time.
fn dict_set(d: &mut Vec<(Value, Value)>, k: Value, v: Value) -> PthResult<()> {
    d.push((k, v));
    Ok(())
}

fn args_of<'a>(args: &'a Value, what: &str) -> PthResult<&'a [Value]> {
    match args {
        Value::Tuple(t) => Ok(t),
        v => Err(pth_error(format!(
            "{what}: arguments are a {}, not a tuple",
            v.kind()
        ))),
    }
}

/// Applies a whitelisted global to its arguments.
fn call(f: &Value, args: &Value) -> PthResult<Value> {
    let g = match f {
        Value::Global(g) => *g,
        v => return Err(pth_error(format!("REDUCE of a {}, not a global", v.kind()))),
    };
    match g {
        Global::OrderedDict => {
            let a = args_of(args, "OrderedDict")?;
            if !a.is_empty() {
                return Err(pth_error("OrderedDict with arguments"));
            }
            Ok(Value::Dict(Rc::default(), true))
        }
        Global::RebuildTensorV2 | Global::RebuildTensor => {
            let a = args_of(args, "_rebuild_tensor_v2")?;
            let want = if g == Global::RebuildTensor {
                4..=4
            } else {
                6..=7
            };
            if !want.contains(&a.len()) {
                return Err(pth_error(format!(
                    "_rebuild_tensor with {} arguments",
                    a.len()
                )));
            }
            let storage = match &a[0] {
                Value::Storage(s) => (**s).clone(),
                v => return Err(pth_error(format!("tensor storage is a {}", v.kind()))),
            };
            let offset = a[1].as_usize("storage offset")?;
            let size = a[2].usize_tuple("tensor size")?;
            let stride = a[3].usize_tuple("tensor stride")?;
            if size.len() != stride.len() {
                return Err(pth_error(format!(
                    "tensor size {size:?} and stride {stride:?} differ in rank"
                )));
            }
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage,
                offset,
                size,
                stride,
            })))
        }
        Global::RebuildParameter => {
            let a = args_of(args, "_rebuild_parameter")?;
            match a.first() {
                Some(t @ Value::Tensor(_)) if a.len() == 3 => Ok(t.clone()),
                _ => Err(pth_error("_rebuild_parameter without a tensor")),
            }
        }
        Global::Storage(_) => Err(pth_error("a storage type called as a function")),
    }
}

/// `('storage', <storage type>, key, location, numel, view_metadata)`.
fn persistent_load(pid: &Value) -> PthResult<Value> {
    let t = match pid {
        Value::Tuple(t) if t.len() == 6 => t,
        v => {
            return Err(pth_error(format!(
                "persistent id is a {}, expected a 6-tuple ('storage', type, key, location, numel, view)",
                v.kind()
            )))
        }
    };
    if !matches!(&t[0], Value::Str(s) if &**s == "storage") {
        return Err(pth_error("persistent id is not a storage"));
    }
    let dtype = match &t[1] {
        Value::Global(Global::Storage(d)) => *d,
        v => return Err(pth_error(format!("storage type is a {}", v.kind()))),
    };
    let key = t[2].as_str("storage key")?.to_string();
    t[3].as_str("storage location")?;
    let numel = t[4].as_usize("storage size")?;
    if !matches!(t[5], Value::None) {
        return Err(pth_error(format!(
            "storage `{key}` is a view of another storage (pre-0.4 files): not supported"
        )));
    }
    Ok(Value::Storage(Rc::new(StorageRef { key, dtype, numel })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn deep_nesting_drops_without_recursion() {
        // a million nested one-tuples: `)` then `\x85` (TUPLE1) repeated
        let mut p = b"\x80\x02)".to_vec();
        p.extend(std::iter::repeat_n(0x85, 1_000_000));
        p.push(b'.');
        let v = load(&p, &mut 0).unwrap();
        assert_eq!(v.kind(), "tuple");
        drop(v);
    }

    #[test]
    fn longs_are_signed() {
        // LONG1 of 0xff (-1), LONG1 of 0xff 0x00 (255)
        for (bytes, want) in [
            (&b"\x80\x02\x8a\x01\xff."[..], -1i128),
            (&b"\x80\x02\x8a\x02\xff\x00."[..], 255),
        ] {
            match load(bytes, &mut 0).unwrap() {
                Value::Int(v) => assert_eq!(v, want),
                v => panic!("{}", v.kind()),
            }
        }
    }
}
