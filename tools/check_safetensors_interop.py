"""Interop between the C io module and PyTorch/NumPy.

    check_safetensors_interop.py write DIR   # python writes DIR/py.safetensors for the C test
    check_safetensors_interop.py check DIR   # python reads DIR/c.safetensors and DIR/c_*.npy from the C test

The values are formulas shared with tests/parity_safetensors.c; exits non-zero
on any mismatch."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import load_file, save_file  # noqa: E402

I64_VALUES = [0, -1, 1 << 40, 2**63 - 1, -(2**63)]
UNICODE_NAME = "caf\u00e9.\U0001F600\"q\""


def py_tensors():
    return {
        "f32": torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 3.0,
        "i64": torch.tensor(I64_VALUES, dtype=torch.int64),
        "i32": torch.tensor([[7, -8], [9, -10]], dtype=torch.int32),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        UNICODE_NAME: torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
    }


def c_expected():
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) * 0.25 - 1.0
    return {
        "c.f32": x,
        "c.i64": torch.tensor([3, -4, 1 << 50], dtype=torch.int64),
        "c.scalar": torch.tensor(-11, dtype=torch.int32),
    }


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def check_equal(name, got, want):
    if got.dtype != want.dtype or list(got.shape) != list(want.shape) or not torch.equal(got, want):
        fail(f"{name}: got {got.dtype} {list(got.shape)} {got.flatten()[:8].tolist()}, "
             f"want {want.dtype} {list(want.shape)} {want.flatten()[:8].tolist()}")


def write(d):
    os.makedirs(d, exist_ok=True)
    save_file(py_tensors(), os.path.join(d, "py.safetensors"), metadata={"producer": "torch", "n": "6"})
    back = load_file(os.path.join(d, "py.safetensors"))
    for k, v in py_tensors().items():
        check_equal("python self-check " + k, back[k], v)
    print("wrote", os.path.join(d, "py.safetensors"))


def check(d):
    tensors, meta = load_file(os.path.join(d, "c.safetensors"), with_metadata=True)
    want = c_expected()
    if set(tensors) != set(want):
        fail(f"tensor names {sorted(tensors)} != {sorted(want)}")
    for k, v in want.items():
        check_equal(k, tensors[k], v)
    if meta != {"producer": "hallu", "quote": "a \"b\"\n\\"}:
        fail(f"metadata {meta!r}")
    with open(os.path.join(d, "c.safetensors"), "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    if (8 + n) % 8:
        fail(f"header length {n}: data not 8-byte aligned")
    a = np.load(os.path.join(d, "c_f32.npy"))
    if a.dtype != np.float32 or a.shape != (2, 3, 4) or not np.array_equal(a, want["c.f32"].numpy()):
        fail(f"c_f32.npy: {a.dtype} {a.shape}")
    b = np.load(os.path.join(d, "c_i64.npy"))
    if b.dtype != np.int64 or b.shape != (3,) or b.tolist() != want["c.i64"].tolist():
        fail(f"c_i64.npy: {b.dtype} {b.shape} {b.tolist()}")
    c = np.load(os.path.join(d, "c_i32.npy"))
    if c.dtype != np.int32 or c.shape != () or int(c) != -11:
        fail(f"c_i32.npy: {c.dtype} {c.shape}")
    print("C-written safetensors and npy files match")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        print(__doc__)
        sys.exit(2)
    (write if sys.argv[1] == "write" else check)(sys.argv[2])
