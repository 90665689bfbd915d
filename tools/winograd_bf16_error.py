#!/usr/bin/env python3
"""How exact a bf16 Winograd convolution can be (issue 28: why hallu's bf16
Winograd is F(2x2, 3x3) and not a larger tile). A measurement, not a test.

For ResNet-18's CIFAR 3x3 layers (64 channels at 32x32 ... 512 at 4x4; a
random ReLU-like input, He-scaled weights) it prints each method's error from
the exact (float64) convolution of the fp32 values, relative to the output's
norm:
  direct     the bf16-rounded input and weights, products summed exactly
             (what oneDNN's bf16 kernels compute, up to fp32 summation)
  F(m, 3)    Winograd F(m x m, 3 x 3) with the bf16-rounded input and weights,
             the transformed input V and weights U rounded to bf16 (the
             matmul's operands), the rest exact; for F(4x4) also the best of
             a few sets of interpolation points.
The transform matrices are built from the points (Toom-Cook; B^T solved so
that the exact-arithmetic result is the convolution, checked to 1e-12).

usage: winograd_bf16_error.py [--seed 0]"""
import argparse

import numpy as np


def bf16(a):
    """Round to bfloat16 (nearest, ties to even), returned as float64."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


def transforms(m, points, r=3):
    """A^T (m x a), G (a x r), B^T (a x a) of F(m, r) on the finite points plus infinity."""
    a = m + r - 1
    assert len(points) == a - 1
    at, g = np.zeros((m, a)), np.zeros((a, r))
    for j, p in enumerate(points):
        at[:, j] = [p ** i for i in range(m)]
        f = np.prod([p - q for q in points if q != p])
        g[j] = [p ** k / f for k in range(r)]
    at[m - 1, a - 1], g[a - 1, r - 1] = 1, 1
    bt = np.zeros((a, a))
    for n in range(a):   # sum_j AT[i, j] G[j, k] BT[j, n] = [n == i + k]
        rows = [at[i] * g[:, k] for i in range(m) for k in range(r)]
        rhs = [1.0 if n == i + k else 0.0 for i in range(m) for k in range(r)]
        bt[:, n] = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return at, g, bt


def conv_direct(x, w):
    """'same' 3x3 correlation: x [C][H][W], w [K][C][3][3] -> [K][H][W]."""
    _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    y = np.zeros((w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            y += np.einsum("kc,chw->khw", w[:, :, i, j], xp[:, i:i + h, j:j + wd])
    return y


def conv_winograd(x, w, tf, m, round_operands):
    at, g, bt = tf
    a = m + 2
    _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (1, 1 + a), (1, 1 + a)))
    u = round_operands(np.einsum("ai,kcij,bj->kcab", g, w, g))
    y = np.zeros((w.shape[0], h, wd))
    for ty in range(0, h, m):
        for tx in range(0, wd, m):
            v = round_operands(np.einsum("ai,cij,bj->cab", bt, xp[:, ty:ty + a, tx:tx + a], bt))
            o = np.einsum("ia,kab,jb->kij", at, np.einsum("kcab,cab->kab", u, v), at)
            hh, ww = min(m, h - ty), min(m, wd - tx)
            y[:, ty:ty + hh, tx:tx + ww] = o[:, :hh, :ww]
    return y


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    methods = [("F(2x2)", 2, [0, 1, -1]), ("F(3x3)", 3, [0, 1, -1, 0.5]), ("F(4x4)", 4, [0, 1, -1, 2, -2]),
               ("F(4x4) 0,+-1,+-1/2", 4, [0, 1, -1, 0.5, -0.5]), ("F(4x4) 0,+-1,1/2,-2", 4, [0, 1, -1, 0.5, -2])]
    tfs = {name: (m, transforms(m, pts)) for name, m, pts in methods}
    print("relative error from the exact fp32 convolution (norm of the difference / norm of the output)")
    print("%-10s %-8s" % ("layer", "direct") + "".join(" %-20s" % name for name, _, _ in methods))
    for c, hw in [(64, 32), (128, 16), (256, 8), (512, 4)]:
        x = np.maximum(rng.standard_normal((c, hw, hw)), 0).astype(np.float32).astype(np.float64)
        w = (rng.standard_normal((c, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32).astype(np.float64)
        exact = conv_direct(x, w)
        norm = np.linalg.norm(exact)
        xb, wb = bf16(x), bf16(w)
        line = "%3d %2dx%-2d  %.2e" % (c, hw, hw, np.linalg.norm(conv_direct(xb, wb) - exact) / norm)
        for name, _, _ in methods:
            m, tf = tfs[name]
            check = np.linalg.norm(conv_winograd(xb, wb, tf, m, lambda t: t) - conv_direct(xb, wb)) / norm
            assert check < 1e-12, "%s: transforms not exact (%.1e)" % (name, check)
            line += " %-20s" % ("%.2e" % (np.linalg.norm(conv_winograd(xb, wb, tf, m, bf16) - exact) / norm))
        print(line)


if __name__ == "__main__":
    main()
