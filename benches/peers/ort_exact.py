#!/usr/bin/env python3
"""ONNX Runtime's int8 convolutions (the `qconv*` cases of run.py) against exact integer arithmetic.

Run (from the workspace root):
    python3 benches/peers/ort_exact.py [--isa avx2|avx512|vnni]

With `--isa`, ONNX Runtime runs at that level (see isa_cap.py). For each case, the script
computes the QLinearConv in 64-bit integers with numpy (the requantization rounded half to even,
as ONNX specifies) and prints the share of output codes where ONNX Runtime differs and the
largest difference:
    exact <case> differ=<codes that differ>/<codes> max=<largest difference>
A difference of one code can come from rounding (the requantization scale is a float).
"""
import argparse
import os

import isa_cap
import numpy as np

import run

CASES = [("qconv_64x56", 64, 56, 8), ("qconv_256x14", 256, 14, 8),
         ("qconv7_64x56", 64, 56, 7), ("qconv7_256x14", 256, 14, 7)]


def exact(c, h, bits, seed):
    """The output of `run.qconv(c, h, bits)` drawn from `seed`, in integers."""
    rng = np.random.default_rng(seed)
    top = 2 ** (bits - 1) - 1
    w = rng.integers(-top, top + 1, (c, c, 3, 3), dtype=np.int8).astype(np.int64)
    b = rng.integers(-1000, 1000, c, dtype=np.int32).astype(np.int64)
    x = rng.integers(0, 256, (1, c, h, h), dtype=np.uint8).astype(np.int64) - 128
    xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    acc = b[:, None, None] + sum(np.einsum("oc,chw->ohw", w[:, :, i, j], xp[:, i:i + h, j:j + h])
                                 for i in range(3) for j in range(3))
    return np.clip(np.round(acc * (0.02 * 0.003 / 0.05)) + 128, 0, 255).astype(np.int64)[None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", choices=isa_cap.CAPPED, help="run ONNX Runtime at this level")
    args = ap.parse_args()
    level = isa_cap.run_at(args.isa)
    print(f"# ONNX Runtime at level {level}")
    for name, c, h, bits in CASES:
        run.RNG = np.random.default_rng(7)
        sess, feeds = run.qconv(c, h, bits)
        got = sess.run(None, feeds)[0].astype(np.int64)
        d = np.abs(got - exact(c, h, bits, 7))
        print(f"exact {name} differ={(d > 0).sum()}/{d.size} max={d.max()}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
