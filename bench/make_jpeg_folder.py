#!/usr/bin/env python3
"""Writes an ImageFolder of ImageNet-size JPEGs for the loader benchmark
(bench_data --folder DIR --size 224 --asymmetric 1): N images of WxH (ImageNet's
typical 500x375), quality 90, in C class folders under DIR/train. The content is
a smooth random field with fine noise, so the files decode like photographs
(neither flat nor pure noise). Needs Pillow and numpy; deterministic (--seed).

usage: bench/make_jpeg_folder.py DIR [--n 2000] [--size 500x375] [--classes 10] [--seed 0]
"""
import argparse, os, sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", default="500x375", help="WxH")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        import numpy as np
        from PIL import Image
    except ImportError as e:
        sys.exit("make_jpeg_folder: needs numpy and Pillow (%s)" % e)
    w, h = (int(v) for v in a.size.lower().split("x"))
    if a.n < 1 or w < 8 or h < 8 or a.classes < 1:
        sys.exit("make_jpeg_folder: --n, --classes >= 1 and a size of at least 8x8 expected")
    rng = np.random.default_rng(a.seed)
    for c in range(a.classes):
        os.makedirs(os.path.join(a.dir, "train", "class%03d" % c), exist_ok=True)
    for i in range(a.n):
        coarse = rng.integers(0, 256, size=(h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        px = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, size=(h, w, 3), dtype=np.int16)
        Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(
            os.path.join(a.dir, "train", "class%03d" % (i % a.classes), "img%06d.jpg" % i), quality=90)
    print("make_jpeg_folder: %d JPEGs of %dx%d in %s/train (%d classes)" % (a.n, w, h, a.dir, a.classes))


if __name__ == "__main__":
    main()
