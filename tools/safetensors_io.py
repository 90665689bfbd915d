"""Minimal safetensors reader/writer for PyTorch (the `safetensors` package is
not packaged for Debian). Format: u64 little-endian header length N, N bytes of
JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{str: str}}, then the raw little-endian bytes, tensors tiling the buffer.

    from safetensors_io import save_file, load_file
    save_file({"w": torch.ones(2, 3)}, "x.safetensors", metadata={"k": "v"})
    tensors, metadata = load_file("x.safetensors", with_metadata=True)

Writes are atomic (temp file in the same directory, fsync, rename, fsync dir).
"""
import json
import os
import struct
import sys
import tempfile

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 << 20

assert sys.byteorder == "little", "safetensors_io assumes a little-endian host"


def atomic_write(path, chunks):
    """Writes an iterable of bytes-like chunks to path atomically."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.numel() == 0:
        return b""
    # Reinterpret as bytes without going through numpy (bfloat16 has no numpy dtype).
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def save_file(tensors, path, metadata=None):
    """tensors: dict name -> torch.Tensor (written in the dict's order)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved")
        if t.dtype not in NAMES:
            raise ValueError(f"tensor {name!r}: unsupported dtype {t.dtype}")
        b = _tensor_bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    atomic_write(path, [struct.pack("<Q", len(text)), text] + blobs)


def _elem_size(dtype):
    return torch.empty((), dtype=dtype).element_size()


def parse_bytes(data, source="<memory>"):
    """Parses a whole file image; returns (tensors, metadata). Validates as the C reader does."""
    if len(data) < 8:
        raise ValueError(f"safetensors {source}: {len(data)} bytes, too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > MAX_HEADER:
        raise ValueError(f"safetensors {source}: header length {n} exceeds the file")
    header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    buf = memoryview(data)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors, spans = {}, []
    for name, info in header.items():
        dtype = DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise ValueError(f"safetensors {source}: tensor {name!r}: unknown dtype {info.get('dtype')!r}")
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        numel = 1
        for s in shape:
            numel *= s
        if not 0 <= begin <= end <= len(buf) or end - begin != numel * _elem_size(dtype):
            raise ValueError(f"safetensors {source}: tensor {name!r}: bad data_offsets [{begin}, {end}]")
        spans.append((begin, end, name))
        if numel == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            raw = bytearray(buf[begin:end])   # a private, writable copy
            tensors[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape)
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise ValueError(f"safetensors {source}: tensor {name!r} at {begin}: overlap or hole (expected {pos})")
        pos = end
    if pos != len(buf):
        raise ValueError(f"safetensors {source}: data buffer has {len(buf)} bytes, tensors cover {pos}")
    return tensors, metadata


def load_file(path, with_metadata=False):
    with open(path, "rb") as f:
        data = f.read()
    tensors, metadata = parse_bytes(data, os.fspath(path))
    return (tensors, metadata) if with_metadata else tensors
