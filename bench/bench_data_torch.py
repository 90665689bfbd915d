#!/usr/bin/python3
"""torchvision peer of bench/bench_data.c: the same two-view CIFAR SSL pipeline
(ContrastiveCrop with a fixed centre box + RandomResizedCrop, flip, ColorJitter
p0.8, grayscale p0.2, ToTensor, Normalize) on PIL images through a PyTorch
DataLoader, (1) from a uint8 array in memory (like torchvision.datasets.CIFAR10)
and (2) from an ImageFolder of JPEGs. Prints "RESULT <name> <images/s>"."""
import argparse
import math
import os
import time

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image
from torch.distributions.beta import Beta
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


class FixedBoxContrastiveCrop(T.RandomResizedCrop):
    """ContrastiveCrop with a fixed box, the formula documented in hallu/augment.h."""

    def __init__(self, size, scale, box=(0.25, 0.75), alpha=0.1):
        super().__init__(size, scale=scale)
        self.box, self.beta = box, Beta(alpha, alpha)

    def forward(self, img):
        width, height = img.size
        area = height * width
        log_ratio = torch.log(torch.tensor(self.ratio))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(self.scale[0], self.scale[1]).item()
            ar = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            w, h = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
            if 0 < w <= width and 0 < h <= height:
                lo, hi = self.box
                c0 = min(max(int(height * lo) - h // 2, 0), height - h)
                c1 = min(max(int(height * hi) - h // 2, 0), height - h)
                d0 = min(max(int(width * lo) - w // 2, 0), width - w)
                d1 = min(max(int(width * hi) - w // 2, 0), width - w)
                i = c0 + int((c1 - c0) * self.beta.sample())
                j = d0 + int((d1 - d0) * self.beta.sample())
                return F.resized_crop(img, i, j, h, w, self.size, self.interpolation)
        return F.resized_crop(img, 0, 0, height, width, self.size, self.interpolation)


def view(crop):
    return T.Compose([crop, T.RandomHorizontalFlip(),
                      T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                      T.RandomGrayscale(p=0.2), T.ToTensor(), T.Normalize(MEAN, STD)])


class TwoViews:
    def __init__(self, size=32):
        self.t1 = view(FixedBoxContrastiveCrop(size, scale=(0.2, 1.0)))
        self.t2 = view(T.RandomResizedCrop(size, scale=(0.2, 1.0)))

    def __call__(self, img):
        return [self.t1(img), self.t2(img)]


class MemoryDataset(Dataset):
    def __init__(self, pixels, labels, transform):
        self.pixels, self.labels, self.transform = pixels, labels, transform

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.pixels[i])), int(self.labels[i])


def run(name, ds, args):
    loader = DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                        drop_last=True)
    images, t0 = 0, time.perf_counter()
    for _ in range(args.epochs):
        for views, _labels in loader:
            images += views[0].shape[0]
    dt = time.perf_counter() - t0
    print(f"{name}: {images} images x 2 views in {dt:.3f} s")
    print(f"RESULT {name} {images / dt:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default="", help="ImageFolder root with train/<class>/*.jpg")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    tf = TwoViews()
    folder = None
    if args.folder:
        root = os.path.join(args.folder, "train")
        folder = Subset(ImageFolder(root, transform=tf), range(args.n))
        base = ImageFolder(root)
        pixels = np.stack([np.asarray(base[i][0].convert("RGB")) for i in range(args.n)])
        labels = np.array([base.targets[i] for i in range(args.n)])
    else:
        rng = np.random.default_rng(7)
        pixels = rng.integers(0, 256, size=(args.n, 32, 32, 3), dtype=np.uint8)
        labels = np.arange(args.n) % 10
    print(f"bench_data_torch: torch {torch.__version__}, {args.workers} workers, "
          f"batch {args.batch}, {len(pixels)} images")
    run("torch_memory", MemoryDataset(pixels, labels, tf), args)
    if folder is not None:
        run("torch_jpeg_folder", folder, args)


if __name__ == "__main__":
    main()
