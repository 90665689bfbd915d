#!/usr/bin/env python3
"""--precision bf16 on a CPU without bf16 instructions (oneDNN's ISA capped
with ONEDNN_MAX_CPU_ISA=AVX2): a named error saying what the CPU lacks, a
non-zero exit, and nothing trained or written; and --precision with a bad
value names the accepted ones. usage: precision_check.py HALLU WORKDIR"""
import os, shutil, subprocess, sys

hallu, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
failures = []


def run(args, env_extra):
    env = dict(os.environ, **env_extra)
    return subprocess.run([hallu] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          timeout=300)


out = os.path.join(work, "capped")
p = run(["train", "--precision", "bf16", "--epochs", "1", "--data", "synthetic:64", "--batch-size", "32",
         "--out", out], {"ONEDNN_MAX_CPU_ISA": "AVX2"})
ok = p.returncode != 0 and "no bf16 instructions" in p.stdout and "avx2" in p.stdout and "ONEDNN_MAX_CPU_ISA" in p.stdout
print(("ok   " if ok else "FAIL ") + "bf16 with the ISA capped at AVX2: exit %d: %s" %
      (p.returncode, p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""))
if not ok:
    failures.append("capped")
if os.path.exists(os.path.join(out, "checkpoint.hlu")):
    failures.append("a checkpoint was written")
p = run(["train", "--precision", "fp16", "--epochs", "0", "--out", os.path.join(work, "bad")], {})
ok = p.returncode != 0 and "expected fp32 or bf16" in p.stdout
print(("ok   " if ok else "FAIL ") + "--precision fp16: exit %d" % p.returncode)
if not ok:
    failures.append("bad value")
sys.exit(1 if failures else 0)
