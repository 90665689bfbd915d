#!/usr/bin/env python3
"""A torchvision ResNet state dict as safetensors, for `hallu train --init FILE`
(and `hallu knn|linear|features --weights FILE`).

  torchvision_to_safetensors.py OUT.safetensors [--arch resnet18|resnet34|resnet50]
      [--stem cifar|imagenet] [--from STATE_DICT.pth] [--seed N] [--bn-batches N]

Without --from the model is torchvision's freshly initialised one (torch.manual_seed
--seed). --stem cifar swaps in the CIFAR stem that `hallu train --stem cifar`
uses (conv1 3x3 stride 1 padding 1, no max-pool); --stem imagenet keeps
torchvision's 7x7/2 conv1 and max-pool. --from loads a torchvision state dict
(a plain dict of tensors, e.g. torch.save(model.state_dict(), ...)) into that
model first (strict), so its shapes are checked here. --bn-batches N runs N
batches of random 32x32 images through the model in training mode, so that the
BN running statistics and num_batches_tracked are not the fresh 0/1/0 (tests).

The file keeps every tensor of the state dict, torchvision's names and dtypes
(float32; num_batches_tracked int64), fc.weight and fc.bias included: hallu
ignores fc.* when it loads a backbone. Written with tools/safetensors_io.py (no
`safetensors` package needed)."""
import argparse
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save_file  # noqa: E402

ARCHS = ("resnet18", "resnet34", "resnet50")


def build(arch, stem, seed=0, state_dict=None, bn_batches=0):
    """The torchvision model (CIFAR stem when stem == 'cifar'), optionally loaded and BN-calibrated."""
    if arch not in ARCHS:
        raise ValueError(f"--arch {arch}: expected one of {', '.join(ARCHS)}")
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"--stem {stem}: expected cifar or imagenet")
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)()
    if stem == "cifar":
        model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = torch.nn.Identity()
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    if bn_batches > 0:
        model.train()
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for _ in range(bn_batches):
                model(torch.randn(8, 3, 32, 32, generator=g))
    return model


def convert(out, arch="resnet18", stem="cifar", seed=0, state_dict=None, bn_batches=0):
    """Writes the model's state dict to out; returns it (name -> tensor)."""
    sd = {k: v.detach().contiguous() for k, v in build(arch, stem, seed, state_dict, bn_batches).state_dict().items()}
    save_file(sd, out, metadata={"format": "pt", "arch": arch, "stem": stem, "source": "torchvision"})
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output .safetensors file (written atomically)")
    ap.add_argument("--arch", default="resnet18", choices=ARCHS)
    ap.add_argument("--stem", default="cifar", choices=("cifar", "imagenet"),
                    help="cifar: conv1 3x3 stride 1, no max-pool (hallu's --stem cifar); imagenet: torchvision's")
    ap.add_argument("--from", dest="src", help="a torchvision state dict (.pth) to convert instead of a fresh init")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bn-batches", type=int, default=0,
                    help="random batches through the model in training mode (non-trivial BN statistics)")
    a = ap.parse_args()
    sd = None
    if a.src:
        sd = torch.load(a.src, map_location="cpu")
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            sys.exit(f"error: --from {a.src}: expected a state dict (a dict of tensors), "
                     f"got {type(sd).__name__}")
    try:
        tensors = convert(a.out, a.arch, a.stem, a.seed, sd, a.bn_batches)
    except (ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.out}: {len(tensors)} tensors ({a.arch}, {a.stem} stem), torchvision names")


if __name__ == "__main__":
    main()
