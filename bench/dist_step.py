#!/usr/bin/env python3
"""Data-parallel step on one machine: N ranks x T threads (mpirun) against
1 rank x N*T threads, the same global batch, in one invocation (not a
pass/fail test). hallu train's metrics give each logged step's images/s, the
share of rank 0's wall time spent in collectives, and the bytes a rank puts
into them per step; the first --skip steps (warm-up) are left out.

usage: bench/dist_step.py HALLU [--ranks 2] [--threads 1] [--batch 256] [--steps 12]
                                [--method simclr] [--arch resnet18] [--size 32] [--sync-bn]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile


def run(cmd, out):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stdout[-2000:]))
    return [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"loss"' in l]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hallu")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--skip", type=int, default=2)
    ap.add_argument("--method", default="simclr")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--sync-bn", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hallu-dist-bench-")
    common = ["train", "--data", "synthetic:%d" % (a.batch * a.steps), "--batch-size", str(a.batch),
              "--epochs", "1", "--log-every", "1", "--no-knn-floor", "--knn-k", "10", "--method", a.method,
              "--arch", a.arch, "--workers", "2"] + (["--sync-bn"] if a.sync_bn else [])
    if a.size != 32:
        common[2] = "synthetic:%d:%d" % (a.batch * a.steps, a.size)
    one = run([a.hallu] + common + ["--threads", str(a.ranks * a.threads), "--out", os.path.join(work, "one")],
              os.path.join(work, "one"))
    dp = run(["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(a.ranks),
              a.hallu] + common + ["--threads", str(a.threads), "--out", os.path.join(work, "ranks")],
             os.path.join(work, "ranks"))
    shutil.rmtree(work, ignore_errors=True)
    keep = lambda rows: rows[a.skip:]
    ips1 = statistics.median(r["images_per_s"] for r in keep(one))
    ips2 = statistics.median(r["images_per_s"] for r in keep(dp))
    comm = statistics.median(r["comm_fraction"] for r in keep(dp))
    mb = statistics.median(r["comm_mb_per_step"] for r in keep(dp))
    print("%s %s, global batch %d, %d steps (first %d left out), medians of the logged steps:" %
          (a.method, a.arch, a.batch, a.steps, a.skip))
    print("  1 rank x %d threads:  %7.1f images/s" % (a.ranks * a.threads, ips1))
    print("  %d ranks x %d thread%s: %7.1f images/s  (ratio %.3f), %.1f%% of rank 0's step in collectives, "
          "%.1f MiB per rank per step into them" % (a.ranks, a.threads, "s" if a.threads > 1 else "", ips2,
                                                      ips2 / ips1, 100 * comm, mb))


if __name__ == "__main__":
    main()
