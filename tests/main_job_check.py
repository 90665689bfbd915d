#!/usr/bin/env python3
"""The README's main job: `hallu train` with no flags but --out must finish and
print a kNN top-1 of at least 3x chance (30% for 10 classes) on the synthetic
held-out split. Prints the wall time (the target is under 3 minutes on 2 cores).
Usage: main_job_check.py HALLU OUTDIR"""
import re
import shutil
import subprocess
import sys
import time

hallu, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
t0 = time.time()
p = subprocess.run([hallu, "train", "--out", out], capture_output=True, text=True)
elapsed = time.time() - t0
print(p.stderr[-3000:])
print(p.stdout)
m = re.search(r"kNN top-1 accuracy: ([0-9.]+)%", p.stdout)
acc = float(m.group(1)) if m else -1.0
ok = p.returncode == 0 and acc >= 30.0
print(f"main job: exit {p.returncode}, kNN top-1 {acc:.2f}% (need >= 30%), {elapsed:.0f} s wall")
print(f"{int(ok)} passed, {int(not ok)} failed")
sys.exit(0 if ok else 1)
