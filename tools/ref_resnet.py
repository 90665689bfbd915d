#!/usr/bin/env python3
"""Writes PyTorch reference tensors for hallu's ResNet parity test.

For each model (ResNet-18 with CIFAR stem on 32x32, ResNet-50 with ImageNet stem
on 64x64) on fixed weights and a fixed batch, in training mode:
  init.<name>   every state_dict tensor before the step (weights hallu loads)
  input         the batch, NCHW float32;   target  int64 labels
  logits, loss  forward output and mean cross-entropy
  grad.<name>   every parameter's gradient
  after.<name>  BN running stats / counters after that one forward
  losses        the loss at each of 5 SGD steps (momentum 0.9, wd 5e-4, lr 0.01)
Usage: ref_resnet.py OUT_DIR
"""
import copy
import os
import sys

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save_file  # noqa: E402

SGD = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
MARGIN = 1e-5


def build(name):
    if name == "resnet18_cifar":
        model = torchvision.models.resnet18(num_classes=10)
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
        x = torch.randn(8, 3, 32, 32)
    else:
        model = torchvision.models.resnet50(num_classes=10)
        x = torch.randn(4, 3, 64, 64)
    # Non-trivial BN affine params and running stats, so every path is exercised.
    # BN biases of magnitude >= 3.4 x the weight keep most pre-ReLU values away
    # from the kink at 0: a value within float rounding of 0 may land on different
    # sides in two correct implementations, and one flipped element out of N
    # changes that layer's gradient by about 1/sqrt(N) relative -- far above the
    # 1e-4 tolerance. Random signs keep both ReLU regimes (and non-zero BN-bias
    # gradients) in play.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.25, 0.35)
            sign = torch.randint(0, 2, m.bias.shape).float() * 2 - 1
            with torch.no_grad():
                m.bias.copy_(sign * torch.empty_like(m.bias).uniform_(1.2, 1.6))
            nn.init.normal_(m.running_mean, 0.0, 0.1)
            nn.init.uniform_(m.running_var, 0.5, 1.5)
    align_residual_signs(model)
    y = torch.randint(0, 10, (x.shape[0],))
    return model, x, y


def align_residual_signs(model):
    """A residual sum (last BN of a block + identity) of opposite-signed biases
    cancels to ~0, where rounding decides the ReLU (about one value in 10^5 lay
    within 1e-5 x RMS of the kink). One sign per channel and stage for every BN that
    feeds the stage's sums (each block's last BN, the downsample BN, and the stem
    BN when the first block has no downsample) keeps the sums at >= 1.2 or at
    ~-1.4 + 0."""
    prev = model.bn1
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        last = [b.bn3 if hasattr(b, "bn3") else b.bn2 for b in stage]
        feeds = last + ([stage[0].downsample[1]] if stage[0].downsample is not None else [prev])
        sign = torch.randint(0, 2, last[0].bias.shape).float() * 2 - 1
        with torch.no_grad():
            for bn in feeds:
                bn.bias.copy_(sign * bn.bias.abs())
        prev = last[-1]


def relu_margin(model, x):
    """The smallest |ReLU input| / RMS of that input over one training forward
    (on a copy: the forward updates BN running stats)."""
    model, worst = copy.deepcopy(model).train(), []

    def pre_hook(module, inp):   # before the in-place ReLU overwrites its input
        v = inp[0].detach()
        worst.append((v.abs() / v.pow(2).mean().sqrt()).min().item())

    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_pre_hook(pre_hook)
    with torch.no_grad():
        model(x)
    return min(worst)


def build_well_conditioned(name):
    """The first seed whose every ReLU input stays MARGIN x RMS away from 0:
    30x float32 convolution rounding (~3e-7 relative, Winograd or direct)."""
    for seed in range(1234, 1334):
        torch.manual_seed(seed)
        model, x, y = build(name)
        if relu_margin(model, x) > MARGIN:
            return model, x, y
    raise SystemExit(f"ref_resnet.py: no seed keeps {name}'s ReLU inputs {MARGIN} away from 0")


def reference(name):
    model, x, y = build_well_conditioned(name)
    out = {"init." + k: v.clone() for k, v in model.state_dict().items()}
    out["input"] = x
    out["target"] = y
    model.train()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    out["logits"] = logits.detach()
    out["loss"] = loss.detach().reshape(1)
    for k, p in model.named_parameters():
        out["grad." + k] = p.grad.detach().clone()
    for k, v in model.state_dict().items():
        if "running" in k or "num_batches" in k:
            out["after." + k] = v.clone()

    model.load_state_dict({k[5:]: v for k, v in out.items() if k.startswith("init.")})
    opt = torch.optim.SGD(model.parameters(), **SGD)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(2)
    for name in ("resnet18_cifar", "resnet50_imagenet"):
        tensors = {k: v.contiguous() for k, v in reference(name).items()}
        save_file(tensors, os.path.join(out_dir, f"ref_{name}.safetensors"))
        print(f"wrote {name}: {len(tensors)} tensors, loss {tensors['loss'].item():.6f}")


if __name__ == "__main__":
    main()
