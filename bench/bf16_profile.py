#!/usr/bin/env python3
"""Where the bf16 training step's time goes (issue 28; a measurement, not a
pass/fail test). Runs bench_train_step --no-torch under oneDNN's execution
trace (DNNL_VERBOSE=2), keeps the primitives of the bf16 step (those whose
data types name bf16), and prints per step:
  - time by primitive kind (forward, backward-data, backward-weights
    convolutions; reorders, i.e. the fp32 <-> bf16 conversions and weight
    layouts),
  - each convolution shape's throughput (GFLOP/s of its direct-convolution
    work, median over the steps),
  - the step's remainder outside oneDNN (batch norm, ReLU, pooling, the head,
    the optimizer: the step time from bench_train_step minus the traced time),
  - the batched matmuls of bf16 Winograd (CPUs without AMX) by shape,
  - a bound: the images/s if every convolution ran at the bf16 peak measured
    in the same run and no reorder were left, the remainder unchanged (the
    Winograd matmuls are not convolutions there: they count as they ran).
The trace itself costs a little time; ratios, not absolute figures, are the
point.

usage: bench/bf16_profile.py BENCH_TRAIN_STEP [--batch 256] [--threads 2] [--steps 3]
"""
import argparse, collections, os, re, statistics, subprocess, sys


def conv_flops(shape):
    d = {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", shape)}
    return 2.0 * d["mb"] * d["ic"] * d["oc"] * d["oh"] * d["ow"] * d["kh"] * d["kw"]


def union_ms(intervals):
    """Length of the union of (start, end) intervals."""
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", help="path of the bench_train_step binary")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    env = dict(os.environ, DNNL_VERBOSE="2", ONEDNN_VERBOSE="2", DNNL_VERBOSE_TIMESTAMP="1",
               ONEDNN_VERBOSE_TIMESTAMP="1")
    p = subprocess.run([a.bench, str(a.batch), str(a.threads), str(a.steps), "--no-torch"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=env)
    if p.returncode != 0:
        sys.exit("bf16_profile: %s failed (exit %d): %s" % (a.bench, p.returncode, p.stdout.strip()[-400:]))
    kinds, shapes = collections.defaultdict(list), collections.defaultdict(list)   # kind: [(start, end) ms]
    wino_shapes = collections.defaultdict(list)   # shape: [(start, end)]
    steps, ips, peak, probe = 0, None, None, False
    for line in p.stdout.splitlines():
        m = re.search(r"bf16 \(--precision bf16\): ([0-9.]+) images/s", line)
        if m:
            ips = float(m.group(1))
        m = re.search(r"machine bf16 products .*: ([0-9.]+) GFLOP/s", line)
        if m:
            peak = float(m.group(1))
        probe = probe or "mb64_ic2048oc2048" in line   # bench_train_step's bf16 peak measurement, after the steps
        if ",exec," not in line or "bf16" not in line or probe:
            continue
        f = line.split(",")
        o = 1 if f[2] == "exec" else 0   # a timestamp (ms at the start) before "exec"
        kind, prop, ms = f[3 + o], f[5 + o], float(f[-1])
        start = float(f[1]) if o else 0.0
        if kind == "convolution" and "mb%d_ic3oc64" % a.batch in line and prop.startswith("forward"):
            steps += 1   # the stem's forward: one per bf16 step (warm-up included)
        wino = kind == "matmul" and re.match(r"16x\d+x\d+:16x", f[-2])   # bf16 Winograd's batched products
        kinds["matmul (Winograd)" if wino else kind if kind != "convolution" else "conv " + prop].append(
            (start, start + ms))
        if kind == "convolution":
            shapes[(prop, f[-2])].append(ms)
        if wino:
            wino_shapes[f[-2]].append((start, start + ms))
    if not steps or ips is None or not peak:
        sys.exit("bf16_profile: no bf16 step in the trace (does this CPU have bf16 instructions? is oneDNN's "
                 "verbose mode on?)")
    step_ms = 1000.0 * a.batch / ips
    # Wall time: the block passes of bf16 Winograd run one matmul per thread side by side, so
    # time is the union of the calls' intervals, not their sum.
    wall = {k: union_ms(v) / steps for k, v in kinds.items()}
    traced = union_ms([iv for v in kinds.values() for iv in v]) / steps
    print("bf16 step: %.1f images/s = %.0f ms per step (batch %d, %d threads); bf16 peak %.0f GFLOP/s" %
          (ips, step_ms, a.batch, a.threads, peak))
    for k, v in sorted(wall.items(), key=lambda kv: -kv[1]):
        print("  %-28s %7.1f ms  %4.1f%%" % (k, v, 100 * v / step_ms))
    rest = max(step_ms - traced, 0.0)
    print("  %-28s %7.1f ms  %4.1f%%" % ("outside oneDNN", rest, 100 * rest / step_ms))
    print("convolutions by shape (median per call, GFLOP/s of direct-convolution work):")
    conv_flops_step = 0.0
    rows = []
    for (prop, shape), v in shapes.items():
        med = statistics.median(v)
        calls = len(v) / steps
        conv_flops_step += conv_flops(shape) * calls
        rows.append((med * calls, prop, shape, med, conv_flops(shape) / med / 1e6, calls))
    for total, prop, shape, med, gf, calls in sorted(rows, reverse=True):
        print("  %-17s %-52s x%.0f %7.2f ms %6.0f GFLOP/s (%3.0f%% of peak)" %
              (prop, shape, calls, med, gf, 100 * gf / peak))
    if wino_shapes:
        print("Winograd's batched matmuls by shape (the 3x3 stride-1 layers on CPUs without AMX; the transforms are "
              "outside oneDNN; \"per thread\": calls run one per thread side by side, measured against the peak's "
              "share of one thread):")
    for shape, v in sorted(wino_shapes.items(), key=lambda kv: -sum(e - s for s, e in kv[1])):
        (b, m, k), n = map(int, shape.split(":")[0].split("x")), int(shape.split(":")[1].split("x")[2])
        med = statistics.median(e - s for s, e in v)
        gf = 2.0 * b * m * k * n / med / 1e6
        side_by_side = union_ms(v) < 0.75 * sum(e - s for s, e in v)
        share = peak / a.threads if side_by_side else peak
        print("  %-52s x%.0f %7.2f ms %6.0f GFLOP/s (%3.0f%% of %s)" % (
            shape, len(v) / steps, med, gf, 100 * gf / share, "one thread's peak, per thread" if side_by_side
            else "peak"))
    bound_ms = conv_flops_step / peak / 1e6 + rest + wall.get("matmul (Winograd)", 0.0)
    print("bound: convolutions at the bf16 peak, no reorders, the rest unchanged: %.0f ms per step = %.1f images/s "
          "(%.2fx this step)" % (bound_ms, 1000.0 * a.batch / bound_ms, step_ms / bound_ms))


if __name__ == "__main__":
    main()
