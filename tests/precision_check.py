#!/usr/bin/env python3
"""--precision bf16 on a CPU without bf16 instructions (oneDNN's ISA capped
with ONEDNN_MAX_CPU_ISA=AVX2): a named error saying what the CPU lacks, a
non-zero exit, and nothing trained or written; --precision with a bad value
names the accepted ones; and where the CPU has bf16, a bf16 run stopped after
2 steps and resumed writes the uninterrupted run's checkpoint byte for byte
(the checkpoint's config records the precision).
usage: precision_check.py HALLU WORKDIR"""
import filecmp, json, os, shutil, struct, subprocess, sys

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

args = ["train", "--precision", "bf16", "--data", "synthetic:256", "--batch-size", "64", "--epochs", "1",
        "--no-knn-floor", "--knn-k", "10", "--threads", "2"]
full, cut = os.path.join(work, "bf16-full"), os.path.join(work, "bf16-cut")
p = run(args + ["--out", full], {})
if p.returncode != 0 and "no bf16 instructions" in p.stdout:
    print("skipped the bf16 resume check: " + p.stdout.strip().splitlines()[-1])
else:
    r1 = run(args + ["--out", cut, "--stop-after-steps", "2"], {})
    r2 = run(args + ["--out", cut, "--resume"], {})
    a, b = os.path.join(full, "checkpoint.hlu"), os.path.join(cut, "checkpoint.hlu")
    raw = open(a, "rb").read()
    meta = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])["__metadata__"]
    ok = (p.returncode == 0 and r1.returncode == 130 and r2.returncode == 0 and filecmp.cmp(a, b, shallow=False)
          and '"precision": "bf16"' in meta["config"])
    print(("ok   " if ok else "FAIL ") + "bf16: stopped after 2 steps and resumed = uninterrupted, byte for byte "
          "(exits %d %d %d), precision recorded" % (p.returncode, r1.returncode, r2.returncode))
    if not ok:
        failures.append("bf16 resume")
sys.exit(1 if failures else 0)
