#!/usr/bin/env python3
"""Compare slimnet's kernels with ONNX Runtime (one intra-op thread) on the same shapes.

Setup (once):   pip install onnxruntime onnx numpy
Run (from the workspace root):
    OMP_NUM_THREADS=1 python3 benches/peers/run.py [--isa scalar|avx2|avx512|vnni|amx] [CASE ...]

`--isa` caps slimnet's kernels at that level (the `SLIMNET_ISA` variable; capped again at what
the CPU has), and ONNX Runtime's at the same level for avx2, avx512 and vnni (the script runs
again with `cpuid_cap.c` preloaded, see `isa_cap.py`; `--ort-native` leaves ONNX Runtime at the
CPU's own level), so the comparison can be made at every level on one machine. The first line
names the CPU, the level each side ran at and ONNX Runtime's version.

The script builds `cargo build --release -p slimnet-kernels --example peer_cases`, then for
each case, one after the other (so both sides see the same machine load), runs that example
on the case (it writes `case ms` lines to `target/peers/slimnet.txt`), builds an ONNX model of
exactly the same shape and layout (NCHW Conv, QLinearConv with per-channel int8 weights, Gemm
with transB=1 for `[out, in]` weights, MatMulInteger), times ONNX Runtime, and prints one line
per case:
    peer <case> slimnet_ms=<f> ort_ms=<f> ratio=<ort_ms/slimnet_ms>
A ratio above 1 means slimnet is faster.

Without VNNI (the avx2 and avx512 levels), ONNX Runtime's int8 convolution multiplies u8
activations by s8 weights with `vpmaddubsw`, whose pair sums saturate at 16 bits: on the
`qconv_*` cases (8-bit weights) its output differs from the exact one on 39-63% of the codes,
by up to 207 (`ort_exact.py --isa avx2` prints it), while slimnet's is exact at every level. Its quantizer's
remedy is 7-bit weights (`reduce_range`); the `qconv7_*` cases time both sides on those, where
both are exact. Sparse cases are compared with ORT's dense Gemm of
the same shape (ORT has no sparse CPU kernel for this).

Each case is timed in `--rounds` rounds (default 3), slimnet then ONNX Runtime in each, and
each side reports the fastest of its per-round medians: on a shared virtual machine a slow
phase of the host lasts seconds and can double one side's median; alternating makes both sides
meet the same phases, and the fastest round is the one least disturbed.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import subprocess
import sys
import time

import isa_cap
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RNG = np.random.default_rng(0)


def session(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def time_ms(sess, feeds):
    sess.run(None, feeds)
    t = time.perf_counter()
    sess.run(None, feeds)
    once = time.perf_counter() - t
    reps = int(min(max(0.5 / max(once, 1e-6), 5), 200))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, feeds)
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


def vi(name, ty, shape):
    return helper.make_tensor_value_info(name, ty, shape)


def conv(c, h, o, k, pad, depthwise=False, stride=1):
    group = c if depthwise else 1
    w = RNG.standard_normal((o, c // group, k, k), dtype=np.float32)
    b = RNG.standard_normal(o, dtype=np.float32)
    oh = (h + 2 * pad - k) // stride + 1
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k],
                            pads=[pad] * 4, group=group, strides=[stride, stride])
    s = session([node], [vi("x", TensorProto.FLOAT, [1, c, h, h])],
                [vi("y", TensorProto.FLOAT, [1, o, oh, oh])],
                [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return s, {"x": RNG.standard_normal((1, c, h, h), dtype=np.float32)}


def gemm(out_f, in_f, batch):
    w = RNG.standard_normal((out_f, in_f), dtype=np.float32)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
    s = session([node], [vi("x", TensorProto.FLOAT, [batch, in_f])],
                [vi("y", TensorProto.FLOAT, [batch, out_f])], [numpy_helper.from_array(w, "w")])
    return s, {"x": RNG.standard_normal((batch, in_f), dtype=np.float32)}


def qconv(c, h, bits=8):
    top = 2 ** (bits - 1) - 1
    w = RNG.integers(-top, top + 1, (c, c, 3, 3), dtype=np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.full(c, 0.003, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(c, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.05, np.float32), "ys"),
        numpy_helper.from_array(np.array(128, np.uint8), "yz"),
        numpy_helper.from_array(RNG.integers(-1000, 1000, c, dtype=np.int32), "b"),
    ]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    s = session([node], [vi("x", TensorProto.UINT8, [1, c, h, h])],
                [vi("y", TensorProto.UINT8, [1, c, h, h])], inits)
    return s, {"x": RNG.integers(0, 256, (1, c, h, h), dtype=np.uint8)}


def matmul_integer(n):
    b = RNG.integers(-127, 128, (n, n), dtype=np.int8)  # [in, out]
    inits = [numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(128, np.uint8), "az"),
             numpy_helper.from_array(np.array(0, np.int8), "bz")]
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    s = session([node], [vi("a", TensorProto.UINT8, [1, n])], [vi("y", TensorProto.INT32, [1, n])],
                inits)
    return s, {"a": RNG.integers(0, 256, (1, n), dtype=np.uint8)}


CASES = {
    "conv_64x56": lambda: conv(64, 56, 64, 3, 1),
    "conv_128x28": lambda: conv(128, 28, 128, 3, 1),
    "conv_256x14": lambda: conv(256, 14, 256, 3, 1),
    "conv_512x7": lambda: conv(512, 7, 512, 3, 1),
    "conv_vgg256x56": lambda: conv(256, 56, 256, 3, 1),
    "conv_lenet20x12": lambda: conv(20, 12, 50, 5, 0),
    "dw_128x56": lambda: conv(128, 56, 128, 3, 1, depthwise=True),
    # the layers of slimnet's `models::resnet_small` at batch 1
    "rs_stem1x28": lambda: conv(1, 28, 16, 3, 1),
    "rs_16x28": lambda: conv(16, 28, 16, 3, 1),
    "rs_16to32s2": lambda: conv(16, 28, 32, 3, 1, stride=2),
    "rs_down16to32s2": lambda: conv(16, 28, 32, 1, 0, stride=2),
    "rs_32x14": lambda: conv(32, 14, 32, 3, 1),
    "rs_32to64s2": lambda: conv(32, 14, 64, 3, 1, stride=2),
    "rs_down32to64s2": lambda: conv(32, 14, 64, 1, 0, stride=2),
    "rs_64x7": lambda: conv(64, 7, 64, 3, 1),
    "linear_4096_b1": lambda: gemm(4096, 4096, 1),
    "linear_4096_b64": lambda: gemm(4096, 4096, 64),
    "linear_1024x4096_b1": lambda: gemm(1024, 4096, 1),
    "sparse70_4096_b1": lambda: gemm(4096, 4096, 1),
    "sparse70_4096_b64": lambda: gemm(4096, 4096, 64),
    "sparse90_4096_b1": lambda: gemm(4096, 4096, 1),
    "sparse90_4096_b64": lambda: gemm(4096, 4096, 64),
    "sparse95_4096_b1": lambda: gemm(4096, 4096, 1),
    "sparse95_4096_b64": lambda: gemm(4096, 4096, 64),
    "qconv_64x56": lambda: qconv(64, 56),
    "qconv_128x28": lambda: qconv(128, 28),
    "qconv_256x14": lambda: qconv(256, 14),
    "qconv_512x7": lambda: qconv(512, 7),
    # 7-bit weights: exact on CPUs without VNNI in both (see the module's note)
    "qconv7_64x56": lambda: qconv(64, 56, 7),
    "qconv7_128x28": lambda: qconv(128, 28, 7),
    "qconv7_256x14": lambda: qconv(256, 14, 7),
    "qconv7_512x7": lambda: qconv(512, 7, 7),
    "qlinear_4096_b1": lambda: matmul_integer(4096),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    ap.add_argument("--file", default=os.path.join(ROOT, "target", "peers", "slimnet.txt"))
    ap.add_argument("--isa", choices=["scalar", "avx2", "avx512", "vnni", "amx"],
                    help="cap slimnet's kernels at this level (SLIMNET_ISA)")
    ap.add_argument("--ort-native", action="store_true",
                    help="leave ONNX Runtime at the CPU's own level (default: the --isa level)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds per case; each side keeps its fastest median")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    ort_level = "native" if args.ort_native else isa_cap.run_at(args.isa)
    env = isa_cap.uncapped(os.environ)
    if args.isa:
        env["SLIMNET_ISA"] = args.isa
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "slimnet-kernels", "--example",
                    "peer_cases"], cwd=ROOT, check=True, stdout=sys.stderr, env=env)
    exe = os.path.join(ROOT, "target", "release", "examples", "peer_cases")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "unknown CPU")
    print(f"# {cpu}; slimnet level {args.isa or 'native'}; onnxruntime {ort.__version__} "
          f"at level {ort_level}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, fastest of {args.rounds} rounds")
    threads = []
    for name in args.cases or CASES:
        if name not in CASES:
            sys.exit(f"unknown case {name}; the cases are: {' '.join(CASES)}")
        sess, feeds = CASES[name]()
        ours = {}
        ort_ms = float("inf")
        for _ in range(args.rounds):
            subprocess.run([exe, args.file, name], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, env=env)
            with open(args.file) as f:
                for line in f:
                    case, ms = line.split()
                    ours[case] = min(ours.get(case, float("inf")), float(ms))
            ort_ms = min(ort_ms, time_ms(sess, feeds))
        s = ours[name]
        print(f"peer {name} slimnet_ms={s:.3f} ort_ms={ort_ms:.3f} ratio={ort_ms / s:.2f}",
              flush=True)
        if name + "_t2" in ours:
            threads.append((name, s, ours[name + "_t2"]))
    for name, t1, t2 in threads:
        print(f"threads {name} t1_ms={t1:.3f} t2_ms={t2:.3f} speedup={t1 / t2:.2f}")


if __name__ == "__main__":
    main()
