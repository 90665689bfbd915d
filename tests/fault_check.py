"""A failing backend op or allocation loses nothing (issue 25): with the test
fault hook of the cpu-isolated backend (HALLU_TEST_FAULT, see
hallu_train_config.test_fault), a failure in the forward pass, in the optimizer
update and while saving a checkpoint each gives a named error and a non-zero
exit, leaves the previous checkpoint.hlu byte for byte as it was and no temp
file behind, and the run then resumes to the end. A failed allocation at set-up
writes no checkpoint at all. Asking for a fault on the cpu backend (no hook) is
a named error.

usage: fault_check.py HALLU OUT_DIR"""
import filecmp
import os
import shutil
import subprocess
import sys

from train_checks import TrainChecks

hallu, root = sys.argv[1], sys.argv[2]
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root)
# 200 images / batch 50 = 4 steps an epoch; 2 epochs; epoch 1's checkpoint kept as a copy.
ARGS = ["train", "--device", "cpu-isolated", "--data", "synthetic:200", "--batch-size", "50", "--epochs", "2",
        "--threads", "2", "--workers", "1", "--no-knn-floor", "--save-every", "1", "--seed", "3"]
t = TrainChecks(hallu, ARGS)


def faulty_run(out, fault, *extra, device_args=()):
    env = dict(os.environ, HALLU_TEST_FAULT=fault)
    p = subprocess.run([hallu] + ARGS + list(device_args) + ["--out", out] + list(extra), capture_output=True,
                       text=True, env=env)
    return p


def leftovers(out):
    return [f for f in os.listdir(out) if ".tmp" in f or f.startswith(".")] if os.path.isdir(out) else []


def expect_failure(name, fault, words):
    """The fault stops the run with a message holding every one of words; the
    epoch-1 checkpoint is what checkpoint.hlu still holds; --resume finishes."""
    out = os.path.join(root, name)
    p = faulty_run(out, fault)
    if p.returncode == 0:
        t.failures.append(f"{name}: HALLU_TEST_FAULT={fault} exited 0")
        return
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    for w in words:
        if w not in last:
            t.failures.append(f"{name}: the error line does not name '{w}': {last!r}")
    ckpt, epoch1 = os.path.join(out, "checkpoint.hlu"), os.path.join(out, "checkpoint_epoch1.hlu")
    if not (os.path.exists(ckpt) and os.path.exists(epoch1) and filecmp.cmp(ckpt, epoch1, shallow=False)):
        t.failures.append(f"{name}: checkpoint.hlu is not epoch 1's any more (or is missing): {os.listdir(out)}")
    if leftovers(out):
        t.failures.append(f"{name}: files left behind: {leftovers(out)}")
    r = t.run(out, "--resume")
    if "kNN top-1 accuracy" not in r.stdout:
        t.failures.append(f"{name}: --resume after the fault did not finish the run: {r.stdout[-300:]}")


# Step 6 is the second step of epoch 2: epoch 1's checkpoint exists by then.
t.check(lambda: expect_failure("forward", "forward:6", ["step 6 (epoch 2) failed", "injected fault"]))
t.check(lambda: expect_failure("optimizer", "optimizer:6", ["step 6 (epoch 2) failed", "injected fault"]))
t.check(lambda: expect_failure("checkpoint", "checkpoint:2", ["checkpoint", "injected fault"]))


def alloc_failure():
    out = os.path.join(root, "alloc")
    p = faulty_run(out, "alloc:5")
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    if p.returncode == 0 or "out of memory" not in last or "injected fault" not in last:
        t.failures.append(f"alloc: expected a named out-of-memory error, got exit {p.returncode}: {last!r}")
    if os.path.exists(os.path.join(out, "checkpoint.hlu")) or leftovers(out):
        t.failures.append(f"alloc: files written after a failed set-up: {os.listdir(out)}")


def no_hook_on_cpu():
    p = faulty_run(os.path.join(root, "cpu"), "forward:1", device_args=("--device", "cpu"))
    if p.returncode == 0 or "no fault hook" not in p.stderr:
        t.failures.append(f"cpu: a fault asked of the cpu backend should be a named error: {p.stderr[-300:]}")


def bad_spec():
    p = faulty_run(os.path.join(root, "bad"), "sideways:1")
    if p.returncode == 0 or "expected forward:STEP" not in p.stderr:
        t.failures.append(f"bad spec: expected a named error: {p.stderr[-300:]}")


t.check(alloc_failure)
t.check(no_hook_on_cpu)
t.check(bad_spec)
sys.exit(t.finish())
