#!/usr/bin/env python3
"""PyTorch peer of bench_train_step: one training step of ResNet-18 (CIFAR stem,
32x32, batch B) = forward + cross-entropy + backward + SGD, at T threads, in
fp32 and under bf16 autocast, each in the default NCHW layout and in
channels_last; images/s = batch / median step
time, as bench_train_step computes hallu's. Prints one line per layout:
  torch <layout> <images/s>
Usage: bench_train_torch.py BATCH THREADS STEPS WARMUP
       bench_train_torch.py --serve BATCH THREADS   (bench_train_step's peer: reads
       a layout per line, runs one step of it, prints the step's seconds)"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import openblas_kernels  # noqa: E402

openblas_kernels.use_fast_kernels()   # before torch loads OpenBLAS

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402


LAYOUTS = ("nchw", "channels_last", "nchw_bf16", "channels_last_bf16")   # _bf16: torch.autocast("cpu", bfloat16)


def model_cifar():
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


class Peer:
    """One layout's model, optimizer and fixed batch."""

    def __init__(self, layout, batch):
        torch.manual_seed(0)
        self.bf16 = layout.endswith("_bf16")
        layout = layout.replace("_bf16", "")
        self.model = model_cifar()
        self.x = torch.randn(batch, 3, 32, 32)
        self.y = torch.randint(0, 10, (batch,))
        if layout == "channels_last":
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.model.train()

    def step(self):
        """One training step; returns its wall time in seconds."""
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0


def serve(batch):
    """bench_train_step's peer: one step of the named layout per stdin line."""
    peers = {layout: Peer(layout, batch) for layout in LAYOUTS}
    for line in sys.stdin:
        print(f"{peers[line.strip()].step():.6f}", flush=True)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        torch.set_num_threads(int(sys.argv[3]))
        serve(int(sys.argv[2]))
        return
    batch, threads, steps, warmup = (int(a) for a in sys.argv[1:5])
    torch.set_num_threads(threads)
    for layout in LAYOUTS:
        peer = Peer(layout, batch)
        secs = [peer.step() for _ in range(warmup + steps)][warmup:]
        print(f"torch {layout} {batch / statistics.median(secs):.2f}", flush=True)


if __name__ == "__main__":
    main()
