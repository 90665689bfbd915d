#!/usr/bin/env python3
"""How far PyTorch's own bf16 autocast step is from the exact gradients (issue
28: why parity_ssl --bf16 bounds each gradient's error against autocast's
instead of asking two bf16 steps to agree to 5e-2). A measurement, not a test.

One training step, from the same float32 weights and batch, computed exactly
(float64) and under torch.autocast("cpu", bfloat16); for each parameter the
norm-relative distance ||autocast - exact|| / ||exact||. It prints the worst
tensor of each kind (convolution and linear weights; the 1-D ones: batch-norm
affine parameters and biases) for:
  - the SSL parity configurations of tools/ref_ssl.py (SimCLR, MoCo v2,
    SimSiam with the Hallucinator; randomised BN) at the test's size (8
    images of 8x8) and at 16 images of 32x32;
  - a supervised ResNet-18 (CIFAR stem) cross-entropy step with PyTorch's
    default initialisation, 8 and 32 images of 32x32;
  - with --trained and --images, the SimCLR + Hallucinator step on real
    images (two views of 32 and of 128 images drawn from the ImageFolder:
    reflect-padded random 32x32 crops and flips, hallu's CIFAR-10
    normalisation),
    from initialisation and from the trained weights (a `hallu export --heads`
    of a SimCLR + Hallucinator run of the CIFAR stem): the better-conditioned
    case, where the features no longer start out parallel.
At initialisation these gradients are small differences of large terms (BN
removes the mean and the x-hat component of what flows back; the SSL losses
compare features that start out nearly parallel), so bf16's 2^-9 rounding of
the activations moves them by tens of percent: two correct bf16
implementations, rounding at different places, differ by as much.

usage: bf16_gradient_conditioning.py [--threads 2] [--trained FILE.safetensors --images DIR]"""
import argparse
import copy
import glob
import os
import random
import sys

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_ssl  # noqa: E402
import ref_ssl_bf16  # noqa: E402
from safetensors_io import load_file  # noqa: E402
from ssl_cifar_torch import MEAN, STD  # noqa: E402  (hallu's CIFAR normalisation, as its peer uses)


def rel_errors(exact, approx):
    return {k: ((approx[k].double() - g.double()).norm() / max(g.double().norm().item(), 1e-12)).item()
            for k, g in exact.items()}


def worst_by_kind(exact, errors):
    """(worst error, name) over the 1-D tensors (batch-norm affine parameters,
    biases) and over the conv and linear weights."""
    worst = {"1d": (0.0, ""), "weight": (0.0, "")}
    for k, e in errors.items():
        kind = "1d" if exact[k].dim() == 1 else "weight"
        if e > worst[kind][0]:
            worst[kind] = (e, k)
    return worst


def report(label, exact, approx):
    errors = rel_errors(exact, approx)
    w = worst_by_kind(exact, errors)
    errs = sorted(errors.values())
    print(f"{label:48s} conv/linear weights: worst {w['weight'][0]:.3f} ({w['weight'][1]}); "
          f"BN affine and biases: worst {w['1d'][0]:.3f} ({w['1d'][1]}); median of all {errs[len(errs) // 2]:.3f}, "
          f"{sum(e > 5e-2 for e in errs)} of {len(errs)} above 5e-2", flush=True)


def ssl(n, size):
    ref_ssl.N, ref_ssl.SIZE = n, size
    for name in ref_ssl_bf16.NAMES:
        cfg, seed = ref_ssl.CONFIGS[name], 1234
        exact = ref_ssl.reference(cfg, seed, torch.float64, 1)
        bf = ref_ssl_bf16.bf16_reference(cfg, seed)
        grads = [k for k in exact if k.startswith("grad.")]
        report(f"SSL {name}, {n} images {size}x{size}", {k: exact[k] for k in grads}, {k: bf[k] for k in grads})


def classifier(n, size):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    model.train()
    x, y = torch.randn(n, 3, size, size), torch.randint(0, 10, (n,))

    def grads(autocast):
        m, xx = copy.deepcopy(model), x
        if not autocast:
            m, xx = m.double(), x.double()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = m(xx)
        F.cross_entropy(out.float() if autocast else out, y).backward()
        return {k: p.grad.detach().clone() for k, p in m.named_parameters()}

    report(f"classifier ResNet-18, {n} images {size}x{size}", grads(False), grads(True))


def real_views(folder, n, seed):
    """Two views of n images drawn from an ImageFolder (class folders of
    images), 32x32 NCHW: reflect-padded by 4, a random 32x32 crop, a random
    flip, normalised as hallu normalises CIFAR-10 (--mean-std cifar)."""
    from PIL import Image
    rng = random.Random(seed)
    files = sorted(glob.glob(os.path.join(folder, "*", "*")))
    if len(files) < n:
        raise SystemExit(f"{folder}: {len(files)} images, {n} wanted")
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    images = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((32, 32)), dtype=np.float32) / 255.0)
              .permute(2, 0, 1) for f in rng.sample(files, n)]
    views = []
    for _ in range(2):
        batch = []
        for im in images:
            t = F.pad(im, (4, 4, 4, 4), mode="reflect")
            y, x = rng.randrange(9), rng.randrange(9)
            t = t[:, y:y + 32, x:x + 32]
            batch.append(t.flip(2) if rng.random() < 0.5 else t)
        views.append((torch.stack(batch) - mean) / std)
    return views


def load_trained(model, tensors, path):
    """The tensors of a `hallu export --heads` file (torchvision names for the
    backbone, the heads' own) into ref_ssl.Model; every tensor of the model
    must be there."""
    state = model.state_dict()
    mapped = {}
    for k, v in tensors.items():
        for name in (k, "encoder." + k):
            if name in state and state[name].shape == v.shape:
                mapped[name] = v
    missing = [k for k in state if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        raise SystemExit(f"{path}: no {', '.join(missing[:4])} ({len(missing)} tensors missing; "
                         "export a SimCLR + Hallucinator checkpoint with --heads)")
    model.load_state_dict(mapped, strict=False)


def ssl_real(trained, folder):
    cfg, tensors = ref_ssl.CONFIGS["simclr_hal"], load_file(trained)
    for n in (32, 128):
        ref_ssl.N, ref_ssl.SIZE = n, 32
        v1, v2 = real_views(folder, n, n)
        torch.manual_seed(0)
        model = ref_ssl.Model("simclr", 1, 0)
        for label in ("initialisation", "trained"):
            if label == "trained":
                load_trained(model, tensors, trained)

            def grads(autocast):
                m, a, b = copy.deepcopy(model), v1, v2
                if autocast:
                    m.embed = ref_ssl_bf16.autocast_wrap(m.embed)
                else:
                    m, a, b = m.double(), v1.double(), v2.double()
                m.train()
                ref_ssl.step_loss(m, cfg, a, b, None).backward()
                return {k: p.grad.detach().clone() for k, p in m.named_parameters()}

            report(f"SSL simclr_hal, {n} real images, {label}", grads(False), grads(True))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trained", help="hallu export --heads of a SimCLR + Hallucinator run (CIFAR stem)")
    ap.add_argument("--images", help="an ImageFolder of real images, e.g. CIFAR-10's train/")
    a = ap.parse_args()
    if bool(a.trained) != bool(a.images):
        ap.error("--trained and --images go together")
    torch.set_num_threads(a.threads)
    ssl(8, 8)
    ssl(16, 32)
    classifier(8, 32)
    classifier(32, 32)
    if a.trained:
        ssl_real(a.trained, a.images)


if __name__ == "__main__":
    main()
