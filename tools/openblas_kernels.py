"""Keeps PyTorch peers off OpenBLAS's slowest kernels on CPUs newer than its table.

Debian 12's OpenBLAS 0.3.21 (which Debian's torch and numpy use for matrix
products) picks its kernels from a table of CPU models and falls back to its
SSE3 "Prescott" ones on a model it does not know (seen: Xeon family 6 model
207, which has AVX-512): 3-5x slower GEMMs, which would make a PyTorch peer
look slower than it is. Call use_fast_kernels() before numpy or torch is
imported: when OpenBLAS would fall back, it sets OPENBLAS_CORETYPE to the
kernels the CPU's flags allow. A value the user set is kept.
"""
import os
import subprocess
import sys

_PROBE = 'import ctypes; ctypes.CDLL("libopenblas.so.0")'
_AVX512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _detected_core():
    env = dict(os.environ, OPENBLAS_VERBOSE="2")
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("Core:"):
            return line.split(":", 1)[1].strip()
    return None


def use_fast_kernels():
    """Returns the core type now in force (None when OpenBLAS chose by itself)."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return os.environ["OPENBLAS_CORETYPE"]
    if _detected_core() != "Prescott":
        return None
    flags = _cpu_flags()
    core = "SkylakeX" if _AVX512 <= flags else "Haswell" if {"avx2", "fma"} <= flags else None
    if core:
        os.environ["OPENBLAS_CORETYPE"] = core
        print(f"openblas_kernels: OpenBLAS would use its SSE3 kernels on this CPU; using {core}'s", file=sys.stderr)
    return core
