#!/usr/bin/env python3
"""PyTorch peer of bench_train_step: one training step of ResNet-18 (CIFAR stem,
32x32, batch B, fp32) = forward + cross-entropy + backward + SGD, at T threads,
in the default NCHW layout and in channels_last. Prints one line per layout:
  torch <layout> <images/s>
Usage: bench_train_torch.py BATCH THREADS STEPS WARMUP"""
import sys
import time

import torch
import torch.nn as nn
import torchvision


def model_cifar():
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


def run(layout, batch, steps, warmup):
    torch.manual_seed(0)
    model = model_cifar()
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def main():
    batch, threads, steps, warmup = (int(a) for a in sys.argv[1:5])
    torch.set_num_threads(threads)
    for layout in ("nchw", "channels_last"):
        print(f"torch {layout} {run(layout, batch, steps, warmup):.2f}", flush=True)


if __name__ == "__main__":
    main()
