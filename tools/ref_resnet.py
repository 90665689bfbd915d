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
import os
import sys

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save_file  # noqa: E402

SGD = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)


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
    y = torch.randint(0, 10, (x.shape[0],))
    return model, x, y


def reference(name):
    torch.manual_seed(1234)
    model, x, y = build(name)
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
