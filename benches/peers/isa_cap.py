"""ONNX Runtime at a chosen instruction-set level, as `SLIMNET_ISA` chooses slimnet's.

ONNX Runtime's kernels (MLAS) pick their variant from the `cpuid` instruction and have no
switch to force one. `run_at(level)` re-executes the running script with `cpuid_cap.c` (built
here into `target/peers/`) preloaded, so that every `cpuid` of the process reports a CPU of
that level: `avx2` (no AVX-512, AVX-VNNI or AMX), `avx512` (AVX-512 without VNNI), `vnni`
(AVX-512 with VNNI, no AMX). Other levels leave ONNX Runtime at the CPU's own. The peers
scripts call it first thing, before ONNX Runtime starts its threads.
"""
import os
import subprocess
import sys

CAPPED = ("avx2", "avx512", "vnni")
VAR = "SLIMNET_CPUID_CAP"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def library():
    """Builds (when older than its source) and returns the path of the preload library."""
    src = os.path.join(HERE, "cpuid_cap.c")
    out = os.path.join(ROOT, "target", "peers", "libcpuid_cap.so")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", out, src], check=True)
    return out


def run_at(level):
    """Returns the level ONNX Runtime runs at in this process: `level` when it is one of
    `CAPPED`, re-executing the script with the cap first if needed; else "native"."""
    if level not in CAPPED:
        return "native"
    if os.environ.get(VAR) == level:
        return level
    if "cpuid_fault" not in open("/proc/cpuinfo").read().split():
        sys.exit(f"cannot run ONNX Runtime at {level}: this CPU or hypervisor does not trap "
                 "cpuid (no cpuid_fault in /proc/cpuinfo); --ort-native runs it at its own level")
    lib = library()
    env = dict(os.environ)
    env[VAR] = level
    env["LD_PRELOAD"] = " ".join(filter(None, [lib, env.get("LD_PRELOAD")]))
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def uncapped(env):
    """`env` without the cap, for the processes the scripts start (cargo, slimnet)."""
    env = dict(env)
    if env.pop(VAR, None) is not None:
        lib = library()
        rest = [p for p in env.get("LD_PRELOAD", "").split() if p != lib]
        if rest:
            env["LD_PRELOAD"] = " ".join(rest)
        else:
            env.pop("LD_PRELOAD", None)
    return env
