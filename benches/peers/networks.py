#!/usr/bin/env python3
"""Whole networks in slimnet against ONNX Runtime, with the same weights, batch and threads.

Setup (once):   pip install onnxruntime onnx numpy
Run (from the workspace root):
    python3 benches/peers/networks.py [--isa scalar|avx2|avx512|vnni|amx] [--batches 1,16]
        [--threads 1,2] [--rounds 3]

Run `cargo run --release --example compose_lenet` first to include the compressed LeNet-5.

The script runs `cargo bench --bench networks` (see benches/networks.rs), which exports each
network to ONNX (`target/peers/networks/<name>-f32.onnx`, `<name>-int8.onnx`,
`<name>-int8_w7.onnx`) and writes slimnet's median latencies of the frozen plans. It then times ONNX Runtime on:
- `f32`: the f32 export;
- `int8`: ONNX Runtime's own int8 model, made by its static quantizer (QDQ, per-channel s8
  weights, u8 activations) from the f32 export, calibrated on the images slimnet uses
  (random images in [0, 1)), against slimnet's int8 model;
- `int8_w7`: the same with 7-bit weights (the quantizer's `reduce_range`, its remedy for the
  16-bit saturation of its kernels on CPUs without VNNI), against slimnet's int8 model with
  7-bit weights;
- `int8_export`, `int8_w7_export`: slimnet's int8 exports (QLinearConv), timed by ONNX Runtime;
- for the compressed model, the f32 export of the uncompressed network it came from.
and prints one line per network, variant, batch and thread count:
    net <name> <variant>-b<batch>-t<threads> slimnet_ms=<f> ort_ms=<f> ratio=<ort_ms/slimnet_ms>
`--isa` caps ONNX Runtime at the same level as slimnet for avx2, avx512 and vnni (see
`isa_cap.py`; `--ort-native` leaves it at the CPU's own). A ratio above 1 means slimnet is
faster. Times are medians; the whole comparison runs in
`--rounds` rounds (default 3), slimnet's bench then ONNX Runtime in each, and each side keeps
its fastest median of the rounds, as run.py does: on a shared machine a slow phase lasts long
enough to fall on one side only.
"""
import argparse
import os
import platform
import subprocess
import sys
import time

import isa_cap
import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "target", "peers", "networks")
# the uncompressed network each compressed one is compared with
UNCOMPRESSED = {"compose_lenet5": "lenet5"}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_ms(sess, x):
    feeds = {sess.get_inputs()[0].name: x}
    sess.run(None, feeds)
    t = time.perf_counter()
    sess.run(None, feeds)
    once = time.perf_counter() - t
    reps = int(min(max(0.5 / max(once, 1e-6), 5), 2000))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, feeds)
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


class RandomImages(CalibrationDataReader):
    """Random images in [0, 1), as slimnet's bench calibrates on."""

    def __init__(self, name, shape, batches=8):
        rng = np.random.default_rng(1)
        self.data = iter([{name: rng.random(shape, dtype=np.float32)} for _ in range(batches)])

    def get_next(self):
        return next(self.data, None)


def ort_int8(name, seven=False):
    """ONNX Runtime's own int8 model of `<name>-f32.onnx` (made once, cached next to it), with
    7-bit weights (`reduce_range`) when `seven`."""
    src = os.path.join(OUT, f"{name}-f32.onnx")
    dst = os.path.join(OUT, f"{name}-ort-int8{'_w7' if seven else ''}.onnx")
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
        inp = onnx.load(src).graph.input[0]
        shape = [16] + [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]
        quantize_static(src, dst, RandomImages(inp.name, shape), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=seven,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dst


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--isa", help="cap slimnet's kernels at this level (SLIMNET_ISA)")
    p.add_argument("--ort-native", action="store_true",
                   help="leave ONNX Runtime at the CPU's own level (default: the --isa level)")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating rounds; each side keeps its fastest median")
    a = p.parse_args()
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    ort_level = "native" if a.ort_native else isa_cap.run_at(a.isa)
    env = isa_cap.uncapped(os.environ)
    if a.isa:
        env["SLIMNET_ISA"] = a.isa
    cmd = ["cargo", "bench", "-q", "--bench", "networks", "--", "--out", OUT,
           "--batches", a.batches, "--threads", a.threads]
    print(f"# {cpu_name()}; slimnet kernels capped at {a.isa or 'the best level'}; "
          f"onnxruntime {ort.__version__} at level {ort_level}; fastest of {a.rounds} rounds",
          flush=True)
    # (name, label, batch, threads) -> [slimnet_ms, ort_ms], the fastest of the rounds
    best = {}
    for _ in range(a.rounds):
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=sys.stderr)
        rows = []
        with open(os.path.join(OUT, "slimnet.txt")) as f:
            for line in f:
                name, variant, batch, threads, ms = line.split()
                rows.append((name, variant, int(batch), int(threads), float(ms)))
        for name, variant, batch, threads, ms in rows:
            peers = []
            if name in UNCOMPRESSED:
                peers.append(("vs_f32", os.path.join(OUT, f"{UNCOMPRESSED[name]}-f32.onnx")))
            elif variant == "f32":
                peers.append(("f32", os.path.join(OUT, f"{name}-f32.onnx")))
            else:
                peers.append((variant, ort_int8(name, variant == "int8_w7")))
                peers.append((f"{variant}_export", os.path.join(OUT, f"{name}-{variant}.onnx")))
            for label, path in peers:
                sess = session(path, threads)
                shape = [batch] + [d.dim_value for d in
                                   onnx.load(path).graph.input[0].type.tensor_type.shape.dim[1:]]
                x = np.random.default_rng(0).random(shape, dtype=np.float32)
                ort_ms = time_ms(sess, x)
                key = (name, label, batch, threads)
                old = best.get(key, [float("inf"), float("inf")])
                best[key] = [min(old[0], ms), min(old[1], ort_ms)]
    for (name, label, batch, threads), (ms, ort_ms) in best.items():
        print(f"net {name} {label}-b{batch}-t{threads} slimnet_ms={ms:.4f} "
              f"ort_ms={ort_ms:.4f} ratio={ort_ms / ms:.2f}", flush=True)


if __name__ == "__main__":
    main()
