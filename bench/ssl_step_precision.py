#!/usr/bin/env python3
"""SimCLR + Hallucinator training step, fp32 and bf16, hallu against PyTorch,
in one invocation (issue 28; not a pass/fail test): hallu train with
--precision fp32 and bf16 (images/s of each logged step from metrics.jsonl),
and tools/ssl_cifar_torch.py --time-steps (fp32 and bf16 autocast, NCHW and
channels_last, glibc huge-page malloc), ResNet-18 CIFAR stem, the same data,
batch and threads; medians of steps 2..N. Then, in the same invocation, the
machine's fp32 sgemm and bf16 peaks (bench_train_step --peaks), against which
each side's speed is quoted in the encoder's direct-convolution FLOPs (two
views, forward and backward: 6x the ResNet-18 forward per image; the heads
and the Hallucinator add < 0.1%).

usage: bench/ssl_step_precision.py HALLU CIFAR_DIR [--batch 256] [--steps 5] [--threads 2]
                                   [--peaks BENCH_TRAIN_STEP]
  CIFAR_DIR: an ImageFolder tree with train/ and test/ (the unpacked cifar10-jpeg.tar.gz)
  BENCH_TRAIN_STEP: default bench/bench_train_step beside HALLU (the build tree)
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def hallu_run(a, precision, work):
    out = os.path.join(work, precision)
    cmd = [a.hallu, "train", "--method", "simclr", "--hallucinator", "--data", "imagefolder:" + a.data,
           "--train-subset", str(a.batch * a.steps), "--batch-size", str(a.batch), "--epochs", "1",
           "--threads", str(a.threads), "--log-every", "1", "--no-knn-floor", "--knn-k", "10",
           "--precision", precision, "--out", out]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print("hallu %s: %s" % (precision, p.stdout.strip().splitlines()[-1]))
        return None
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"loss"' in l]
    return statistics.median(r["images_per_s"] for r in rows[1:])


def torch_run(a, amp, channels_last):
    cmd = ["/usr/bin/python3", os.path.join(HERE, "..", "tools", "ssl_cifar_torch.py"), "--data", a.data,
           "--method", "simclr", "--hallucinator", "--train-subset", str(a.batch * a.steps), "--batch-size",
           str(a.batch), "--threads", str(a.threads), "--time-steps", str(a.steps), "--amp", amp]
    if channels_last:
        cmd.append("--channels-last")
    env = dict(os.environ, GLIBC_TUNABLES=os.environ.get("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1"))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1])["images_per_s"] if lines else None


def peaks(a):
    """(sgemm GFLOP/s, bf16 GFLOP/s or None, forward FLOPs per image) from bench_train_step --peaks."""
    exe = a.peaks or os.path.join(os.path.dirname(os.path.abspath(a.hallu)), "bench", "bench_train_step")
    if not os.path.exists(exe):
        print("(no %s: the peaks are left out; --peaks names it)" % exe)
        return None
    p = subprocess.run([exe, "--peaks", str(a.threads)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print("%s --peaks failed (exit %d): %s" % (exe, p.returncode, p.stdout.strip()[-300:]))
        return None
    print(p.stdout.rstrip())
    find = lambda pat: re.search(pat, p.stdout)
    sgemm, bf16 = find(r"machine fp32 sgemm .*: ([0-9.]+) GFLOP/s"), find(r"machine bf16 products .*: ([0-9.]+) GFLOP/s")
    fwd = find(r"forward: ([0-9.]+) FLOPs per image")
    if not sgemm or not fwd:
        return None
    return float(sgemm.group(1)), float(bf16.group(1)) if bf16 else None, float(fwd.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hallu")
    ap.add_argument("data")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peaks", help="bench_train_step binary (default: bench/bench_train_step beside HALLU)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hallu-ssl-precision-")
    rows = {"hallu fp32": hallu_run(a, "fp32", work), "hallu bf16": hallu_run(a, "bf16", work)}
    for amp in ("none", "bf16"):
        for cl in (False, True):
            rows["torch %s %s" % ("fp32" if amp == "none" else "bf16 autocast", "channels_last" if cl else "NCHW")] = \
                torch_run(a, amp, cl)
    shutil.rmtree(work, ignore_errors=True)
    machine = peaks(a)
    print("SimCLR + Hallucinator step, ResNet-18 CIFAR stem, batch %d, %d threads, medians of steps 2..%d:" %
          (a.batch, a.threads, a.steps))
    for k, v in rows.items():
        of_peak = ""
        if v and machine:
            sgemm, bf16, fwd = machine
            lowp = "bf16" in k
            if not lowp or bf16:
                of_peak = " = %.0f%% of the %s peak" % (100.0 * v * 6 * fwd / 1e9 / (bf16 if lowp else sgemm),
                                                        "bf16" if lowp else "sgemm")
        print("  %-32s %s%s" % (k, "%.1f images/s" % v if v else "unavailable", of_peak))
    h32, h16 = rows["hallu fp32"], rows["hallu bf16"]
    torch_best = max((v for k, v in rows.items() if k.startswith("torch") and v), default=None)
    if h16 and h32:
        print("  hallu bf16 / hallu fp32 = %.2fx" % (h16 / h32))
    if h16 and torch_best:
        print("  hallu bf16 / best PyTorch configuration = %.2fx" % (h16 / torch_best))


if __name__ == "__main__":
    main()
