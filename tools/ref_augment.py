#!/usr/bin/python3
"""Reference outputs of torchvision 0.14's functional transforms on uint8 tensors,
for tests/parity_augment.c.

Every case applies one transform (or a fixed chain) with FIXED parameters to a
real CIFAR-10 image (or a 96x96 mosaic of them) and records input, parameters
and output. Without the CIFAR archive, smooth generated images are used.

File format (little endian), written atomically:
  magic "HALUAUG1", u32 version (1), u32 n_cases, then per case:
  char name[32], i32 op, i32 iparams[16], f32 fparams[16],
  i32 in_h, i32 in_w, u8 in[in_h*in_w*3] (HWC),
  i32 out_h, i32 out_w, u8 out[out_h*out_w*3].
"""
import argparse
import os
import struct
import tarfile
import tempfile

import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

OPS = {"resized_crop": 0, "hflip": 1, "brightness": 2, "contrast": 3, "saturation": 4,
       "hue": 5, "jitter": 6, "grayscale": 7, "blur": 8, "solarize": 9, "resize": 10,
       "center_crop": 11, "chain": 12}
JITTER_FNS = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]


def load_cifar(archive, workdir, count):
    """Extracts `count` test images into workdir; returns HWC uint8 arrays."""
    from PIL import Image
    out = []
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            parts = m.name.split("/")
            # The first two test images of each class, in archive order.
            if not m.isfile() or len(parts) != 4 or parts[1] != "test" or \
                    parts[3] not in ("0000.jpg", "0001.jpg"):
                continue
            tar.extract(m, workdir)
            with Image.open(os.path.join(workdir, m.name)) as im:
                out.append(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
            if len(out) == count:
                break
    return out


def generated_images(count):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    imgs = []
    for k in range(count):
        f = rng.uniform(0.05, 0.3, size=3)
        ch = [127 + 120 * np.sin(f[c] * (xx + 2 * c * k) + f[(c + 1) % 3] * yy) for c in range(3)]
        img = np.stack(ch, axis=-1) + rng.normal(0, 6, size=(32, 32, 3))
        imgs.append(np.clip(img, 0, 255).astype(np.uint8))
    return imgs


def to_chw(hwc):
    return torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1).contiguous()


def to_hwc(chw):
    return chw.permute(1, 2, 0).contiguous().numpy()


def apply(op, t, ip, fp):
    if op == "resized_crop":
        return F.resized_crop(t, ip[0], ip[1], ip[2], ip[3], [ip[4], ip[5]],
                              InterpolationMode.BILINEAR, antialias=False)
    if op == "resize":
        return F.resize(t, [ip[4], ip[5]], InterpolationMode.BILINEAR, antialias=False)
    if op == "center_crop":
        return F.center_crop(t, [ip[4], ip[5]])
    if op == "hflip":
        return F.hflip(t)
    if op in ("brightness", "contrast", "saturation", "hue"):
        return JITTER_FNS[["brightness", "contrast", "saturation", "hue"].index(op)](t, fp[0])
    if op == "jitter":
        for k in ip[:4]:
            t = JITTER_FNS[k](t, fp[k])
        return t
    if op == "grayscale":
        return F.rgb_to_grayscale(t, num_output_channels=3)
    if op == "blur":
        return F.gaussian_blur(t, [ip[0], ip[0]], [fp[0], fp[0]])
    if op == "solarize":
        return F.solarize(t, fp[0])
    if op == "chain":
        # resized_crop(ip0..5) -> flip(ip6) -> jitter(order ip8..11, fp0..3)
        # -> grayscale(ip7) -> blur(ip12, fp4) -> solarize(fp5 if ip13)
        t = apply("resized_crop", t, ip, fp)
        if ip[6]:
            t = F.hflip(t)
        t = apply("jitter", t, ip[8:12], fp)
        if ip[7]:
            t = F.rgb_to_grayscale(t, num_output_channels=3)
        if ip[12] > 0:
            t = F.gaussian_blur(t, [ip[12], ip[12]], [fp[4], fp[4]])
        if ip[13]:
            t = F.solarize(t, fp[5])
        return t
    raise ValueError(op)


def cases_for(tag, img, big):
    h, w = img.shape[:2]
    c = []

    def add(name, op, ip=(), fp=()):
        ip = list(ip) + [0] * (16 - len(ip))
        # Parameters are stored as float32; torchvision sees the same rounded values
        # (as in real use, where factors come from float32 uniform_().item()).
        fp = [float(np.float32(x)) for x in list(fp) + [0.0] * (16 - len(fp))]
        c.append((f"{tag}_{name}", op, ip, fp))

    if big:
        add("rc_down", "resized_crop", [5, 7, 80, 70, 32, 32])
        add("rc_up", "resized_crop", [10, 20, 40, 50, 96, 96])
        add("rc_whole64", "resized_crop", [0, 0, 96, 96, 64, 64])
        add("resize32", "resize", [0, 0, 0, 0, 32, 32])
        add("ccrop64", "center_crop", [0, 0, 0, 0, 64, 64])
        add("blur9", "blur", [9], [2.0])
        add("blur23", "blur", [23], [1.1])
    else:
        add("rc_up", "resized_crop", [2, 3, 20, 25, 32, 32])
        add("rc_small", "resized_crop", [9, 1, 7, 11, 32, 32])
        add("rc_same", "resized_crop", [0, 0, h, w, h, w])
        add("rc_odd", "resized_crop", [1, 0, 31, 29, 24, 40])
        add("resize", "resize", [0, 0, 0, 0, 40, 48])
        add("ccrop", "center_crop", [0, 0, 0, 0, 24, 19])
        add("blur3", "blur", [3], [0.8])
        add("blur5", "blur", [5], [1.7])
    add("hflip", "hflip")
    add("bright_lo", "brightness", fp=[0.6])
    add("bright_hi", "brightness", fp=[1.37])
    add("contrast_lo", "contrast", fp=[0.63])
    add("contrast_hi", "contrast", fp=[1.4])
    add("sat_lo", "saturation", fp=[0.6])
    add("sat_hi", "saturation", fp=[1.33])
    add("hue_m01", "hue", fp=[-0.1])
    add("hue_p007", "hue", fp=[0.07])
    add("hue_half", "hue", fp=[0.5])
    add("hue_mhalf", "hue", fp=[-0.5])
    add("jitter_a", "jitter", [3, 1, 0, 2], [1.2, 0.7, 1.3, 0.05])
    add("jitter_b", "jitter", [0, 2, 3, 1], [0.65, 1.35, 0.75, -0.08])
    add("gray", "grayscale")
    add("solar128", "solarize", fp=[128.0])
    add("solar200", "solarize", fp=[200.0])
    side = h if big else 32
    add("chain", "chain", [1, 2, side - 4, side - 2, 32, 32, 1, 0, 2, 0, 3, 1, 3, 1],
        [1.25, 0.8, 1.2, -0.06, 0.9, 128.0])
    add("chain_gray", "chain", [0, 0, side, side, 32, 32, 0, 1, 1, 3, 2, 0, 0, 0],
        [0.7, 1.3, 0.6, 0.09, 0.0, 0.0])
    return c


def write_file(path, records):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".augref")
    with os.fdopen(fd, "wb") as f:
        f.write(b"HALUAUG1" + struct.pack("<II", 1, len(records)))
        for name, op, ip, fp, inp, out in records:
            f.write(struct.pack("<32s", name.encode()[:31]))
            f.write(struct.pack("<i16i16f", OPS[op], *ip, *fp))
            f.write(struct.pack("<ii", *inp.shape[:2]) + inp.tobytes())
            f.write(struct.pack("<ii", *out.shape[:2]) + out.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archive", default="", help="cifar10-jpeg.tar.gz (optional)")
    ap.add_argument("--out", required=True, help="output .bin file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = os.path.join(os.path.dirname(os.path.abspath(args.out)), "augment_parity_images")
    imgs = []
    if args.archive and os.path.exists(args.archive):
        imgs = load_cifar(args.archive, work, 13)
    source = "CIFAR-10 test images" if len(imgs) == 13 else "generated images"
    if len(imgs) < 13:
        imgs = generated_images(13)
    small, tiles = imgs[:4], imgs[4:13]
    big = np.concatenate([np.concatenate(tiles[r * 3:r * 3 + 3], axis=1) for r in range(3)], axis=0)
    records = []
    for k, img in enumerate(small + [big]):
        is_big = k == len(small)
        for name, op, ip, fp in cases_for("big" if is_big else f"img{k}", img, is_big):
            out = to_hwc(apply(op, to_chw(img), ip, fp))
            records.append((name, op, ip, fp, img, out))
    write_file(args.out, records)
    print(f"ref_augment: {len(records)} cases from {source} -> {args.out}")


if __name__ == "__main__":
    main()
