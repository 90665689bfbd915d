"""cpu and cpu-isolated compute the same thing, bit for bit (issue 25): the same
`hallu train` on both devices prints the same final loss and kNN lines and
writes byte-identical checkpoints. cpu-isolated's device addresses fault when
host code touches them, so a run that finishes there also shows that no code
outside src/backend/ reads or writes device memory.

usage: device_check.py HALLU OUT_DIR short|default
  short:   SimCLR + Hallucinator, MoCo v2 + Hallucinator with Shuffle BN
           (--bn-splits 2) and SimSiam, 1 epoch each on synthetic:300
  default: the main job exactly as `hallu train` runs it with no options"""
import filecmp
import os
import re
import shutil
import sys

from train_checks import TrainChecks

hallu, root, mode = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root)

if mode == "short":
    common = ["--data", "synthetic:300", "--batch-size", "50", "--epochs", "1", "--threads", "2", "--seed", "5",
              "--no-knn-floor"]
    runs = {
        "simclr_hal": ["--method", "simclr"],
        "mocov2_hal_shufflebn": ["--method", "mocov2", "--bn-splits", "2", "--queue-size", "400"],
        "simsiam": ["--method", "simsiam", "--no-hallucinator"],
    }
elif mode == "default":
    common, runs = [], {"default_job": []}
else:
    sys.exit(f"unknown mode {mode!r} (short | default)")

t = TrainChecks(hallu, ["train"] + common)
LINES = re.compile(r"^(untrained kNN top-1|final loss|kNN top-1 accuracy).*$", re.M)


def compare(name, extra):
    outs = {}
    for device in ("cpu", "cpu-isolated"):
        out = os.path.join(root, f"{name}_{device}")
        p = t.run(out, *extra, "--device", device)
        # the run directory differs by name only: drop it from the lines compared
        outs[device] = (out, [m.group(0).replace(out, "RUN") for m in LINES.finditer(p.stdout)])
    (a, la), (b, lb) = outs["cpu"], outs["cpu-isolated"]
    if not la or len(la) != len(lb) or la != lb:
        t.failures.append(f"{name}: the result lines differ between devices:\n  cpu:          {la}\n"
                          f"  cpu-isolated: {lb}")
    if not any(ln.startswith("final loss") for ln in la):
        t.failures.append(f"{name}: no 'final loss' line: {la}")
    ca, cb = os.path.join(a, "checkpoint.hlu"), os.path.join(b, "checkpoint.hlu")
    if not (os.path.exists(ca) and os.path.exists(cb) and filecmp.cmp(ca, cb, shallow=False)):
        t.failures.append(f"{name}: checkpoint.hlu differs between the devices (or is missing)")
    else:
        print(f"{name}: same bits on cpu and cpu-isolated: {la}")


for name, extra in runs.items():
    t.check(lambda: compare(name, extra))
sys.exit(t.finish())
