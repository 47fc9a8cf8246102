#!/usr/bin/env python3
"""Peers for slimnet-decompose: SVD vs numpy/scipy, CP-ALS and Tucker vs TensorLy, one thread each.

    pip install numpy scipy tensorly
    python3 benches/peers/decompose.py [--quick] [--lapack] [--cp-seeds N]

`--lapack` builds the slimnet side with the `lapack` feature (factorizations on the system
OpenBLAS, one thread through OPENBLAS_NUM_THREADS=1 as set below) and tags every case `_lapack`.

Generates seeded data, writes it as raw little-endian f32 files, times the slimnet side through
`cargo run --release -p slimnet-decompose --example decompose_peer` (the decomposition alone,
best of 3) and the peer in-process on the same data (best of 3; 1 run for TensorLy CP), and
prints one line per case:

    peer <case> slimnet_ms=<f> peer_ms=<f> ratio=<peer_ms/slimnet_ms> slimnet_relerr=<f> peer_relerr=<f>

SVDs are thin (full_matrices=False) on both sides: slimnet returns the thin factors.

Both CP-ALS sides start from an SVD whose columns beyond the 3x3 modes' sizes are random, so
one run is one draw. `--cp-seeds N` (N > 1) also runs seeds 0..N-1 on both sides (slimnet's
`CpConfig::seed`, TensorLy's `random_state`) and prints a `_median_of_N` line with the medians of
the times and errors.
"""
import os

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
          "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[v] = "1"

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


LAPACK = "--lapack" in sys.argv


def flag_value(name, default):
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


def slimnet(*args):
    features = ["--features", "lapack"] if LAPACK else []
    cmd = ["cargo", "run", "-q", "--release", "-p", "slimnet-decompose", *features, "--example", "decompose_peer",
           "--", *args]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    fields = dict(kv.split("=") for kv in out.split())
    return float(fields["ms"]), float(fields["relerr"])


def best_ms(f, repeat=3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, (time.perf_counter() - t) * 1e3)
    return best, out


def relerr(x, y):
    x64 = x.astype(np.float64)
    return float(np.linalg.norm(x64 - y.astype(np.float64)) / np.linalg.norm(x64))


def line(case, s_ms, p_ms, s_err, p_err):
    if LAPACK:
        case += "_lapack"
    print(f"peer {case} slimnet_ms={s_ms:.3f} peer_ms={p_ms:.3f} ratio={p_ms / s_ms:.3f} "
          f"slimnet_relerr={s_err:.4e} peer_relerr={p_err:.4e}", flush=True)


def cp_tensor(shape, rank, noise, rng):
    f = [rng.standard_normal((d, rank)) for d in shape]
    x = np.einsum("ir,jr,kr,lr->ijkl", *f)
    e = rng.standard_normal(shape)
    x = x + noise * np.linalg.norm(x) / np.linalg.norm(e) * e
    return x.astype(np.float32)


def main():
    quick = "--quick" in sys.argv
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp(prefix="slimnet-decompose-peer-")
    svd_shapes = [(4608, 512)] if quick else [(4608, 512), (4096, 4096)]
    for m, n in svd_shapes:
        a = rng.standard_normal((m, n)).astype(np.float32)
        path = os.path.join(tmp, f"svd_{m}x{n}.f32")
        a.tofile(path)
        s_ms, s_err = slimnet("svd", path, str(m), str(n))
        rep = 1 if m * n > 4_000_000 else 3

        def rec(usv):
            u, s, vt = usv
            return (u * s) @ vt

        p_ms, usv = best_ms(lambda: np.linalg.svd(a, full_matrices=False), rep)
        line(f"svd_{m}x{n}_numpy", s_ms, p_ms, s_err, relerr(a, rec(usv)))
        p_ms, usv = best_ms(lambda: scipy.linalg.svd(a, full_matrices=False, lapack_driver="gesdd"), rep)
        line(f"svd_{m}x{n}_scipy", s_ms, p_ms, s_err, relerr(a, rec(usv)))

    import tensorly as tl
    from tensorly.decomposition import parafac, tucker

    x = cp_tensor((128, 128, 3, 3), 64, 0.01, rng)
    path = os.path.join(tmp, "cp_128x128x3x3.f32")
    x.tofile(path)
    iters = 100
    s_ms, s_err = slimnet("cp", path, "128,128,3,3", "64", str(iters))
    xt = tl.tensor(x.astype(np.float64))
    p_ms, cp = best_ms(lambda: parafac(xt, 64, n_iter_max=iters, init="svd", tol=0.0), 1)
    line("cp_128x128x3x3_r64_it100_tensorly", s_ms, p_ms, s_err, relerr(x, tl.cp_to_tensor(cp)))
    seeds = flag_value("--cp-seeds", 1)
    if seeds > 1:
        runs = []
        for seed in range(seeds):
            s_ms, s_err = slimnet("cp", path, "128,128,3,3", "64", str(iters), str(seed))
            p_ms, cp = best_ms(lambda: parafac(xt, 64, n_iter_max=iters, init="svd", tol=0.0,
                                               random_state=seed), 1)
            p_err = relerr(x, tl.cp_to_tensor(cp))
            print(f"  seed {seed}: slimnet_relerr={s_err:.4e} peer_relerr={p_err:.4e}", flush=True)
            runs.append((s_ms, p_ms, s_err, p_err))
        med = [float(np.median([r[i] for r in runs])) for i in range(4)]
        line(f"cp_128x128x3x3_r64_it100_tensorly_median_of_{seeds}", *med)
    # the same 100 ALS sweeps followed by the Levenberg-Marquardt refinement (slimnet only; the
    # peer column repeats TensorLy's 100 sweeps)
    s_ms, s_err = slimnet("cp-lm", path, "128,128,3,3", "64", str(iters))
    line("cp_128x128x3x3_r64_it100_plus_lm_vs_tensorly_it100", s_ms, p_ms, s_err, relerr(x, tl.cp_to_tensor(cp)))

    s_ms, s_err = slimnet("tucker", path, "128,128,3,3", "64,64,3,3")
    p_ms, tk = best_ms(lambda: tucker(xt, rank=[64, 64, 3, 3], init="svd", n_iter_max=50, tol=1e-7), 3)
    line("tucker_128x128x3x3_r64x64x3x3_tensorly", s_ms, p_ms, s_err, relerr(x, tl.tucker_to_tensor(tk)))


if __name__ == "__main__":
    main()
