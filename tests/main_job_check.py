#!/usr/bin/env python3
"""The README's main job: `hallu train` with no flags but --out must finish and
end with a held-out kNN top-1 at least 10 points above the untrained network's
(the "floor" every run measures first); the README's promise is 15, the 5-point
margin absorbs other CPUs' rounding. Prints the wall time (the target is 90 s of
training and evaluation on 2 cores).
Usage: main_job_check.py HALLU OUTDIR [extra hallu train flags, e.g. --lr 1e-9 to
see the check fail]"""
import re
import shutil
import subprocess
import sys
import time

MIN_GAIN = 10.0
hallu, out, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
shutil.rmtree(out, ignore_errors=True)
t0 = time.time()
p = subprocess.run([hallu, "train", "--out", out] + extra, capture_output=True, text=True)
elapsed = time.time() - t0
print(p.stderr[-3000:])
print(p.stdout)
floor = re.search(r"untrained kNN top-1: ([0-9.]+)%", p.stdout)
final = re.search(r"kNN top-1 accuracy: ([0-9.]+)%", p.stdout)
floor = float(floor.group(1)) if floor else float("nan")
acc = float(final.group(1)) if final else float("nan")
ok = p.returncode == 0 and acc >= floor + MIN_GAIN
print(f"main job: exit {p.returncode}, kNN top-1 {acc:.2f}% vs untrained {floor:.2f}% "
      f"(gain {acc - floor:+.2f}, need >= +{MIN_GAIN:.0f}), {elapsed:.0f} s wall")
print(f"{int(ok)} passed, {int(not ok)} failed")
sys.exit(0 if ok else 1)
