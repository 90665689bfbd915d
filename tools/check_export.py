#!/usr/bin/env python3
"""Loads hallu-exported backbones into torchvision's ResNets with strict=True
and checks that they give hallu's features on hallu's batch (eval mode).
Exit status 1 when any relative error exceeds 1e-4.
Usage: check_export.py DIR"""
import os
import sys

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import load_file  # noqa: E402


def backbone(arch, stem):
    model = getattr(torchvision.models, arch)()
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model


def check(directory, arch, stem):
    weights = load_file(os.path.join(directory, f"{arch}_{stem}.safetensors"))
    io = load_file(os.path.join(directory, f"{arch}_{stem}.io.safetensors"))
    model = backbone(arch, stem)
    model.load_state_dict(weights, strict=True)
    model.eval()
    with torch.no_grad():
        got = model(io["input"])
    want = io["features"]
    rel = ((got - want).norm() / want.norm()).item()
    ok = rel <= 1e-4
    print(f"{'ok' if ok else 'FAIL'} {arch}/{stem}: {len(weights)} tensors loaded strictly; "
          f"feature rel err {rel:.3e}, max|diff| {(got - want).abs().max().item():.3e}")
    return ok


def main():
    torch.set_num_threads(2)
    results = [check(sys.argv[1], "resnet18", "cifar"), check(sys.argv[1], "resnet50", "imagenet")]
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
