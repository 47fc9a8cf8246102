#!/usr/bin/env python3
"""How fast ONNX Runtime's int8 GEMM runs on this CPU, one thread: a hint whether it uses AMX.

    OMP_NUM_THREADS=1 python3 benches/peers/ort_int8_gemm.py [N]

Times MatMulInteger (u8 x i8 -> i32) on N x N x N (default 1024) and prints
    ort_int8_gemm n=<N> ms=<f> gmacs=<f>
AVX-512 VNNI does 64 multiply-adds per instruction, so on one core at 2-4 GHz with one or
two such instructions per cycle it tops out at roughly 130-500 GMAC/s; a rate well above the
CPU's VNNI figure means the AMX tile unit is in use.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    w = rng.integers(-127, 128, (n, n), dtype=np.int8)
    node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, {"a": a})
    ts = []
    for _ in range(20):
        t = time.perf_counter()
        sess.run(None, {"a": a})
        ts.append(time.perf_counter() - t)
    t = float(np.median(ts))
    print(f"ort_int8_gemm n={n} ms={t * 1e3:.3f} gmacs={n ** 3 / t / 1e9:.0f}")


if __name__ == "__main__":
    main()
