#!/usr/bin/env python3
"""Interrupt-and-resume must equal an uninterrupted run, bit for bit.

Runs `hallu train` five ways with the same seed and threads:
  A  uninterrupted;
  B  --stop-after-steps (the internal interrupt path) then --resume;
  C  SIGKILL in the second epoch (no chance to save), then --resume from the
     epoch-1 checkpoint;
  D  SIGINT in the middle of a run (saves a checkpoint mid-epoch), then --resume;
  E  a second stop signal in the first epoch, while the first is being honoured:
     quits at once with no checkpoint saved yet, so --resume starts from step 0.
and checks that every model/optimizer/method tensor of the final checkpoint and
every metrics line (loss, lr, collapse std, kNN; not the timing fields) equal A's.
METHOD simclr (default) also checks `hallu export`; mocov2 runs MoCo v2 + Hallucinator
with shuffled BN groups and a queue that wraps several times, so the key encoder,
queue, pointer and shuffle RNG must all survive the interruptions (run under the
sanitizers too: an interrupted MoCo run once aborted in glibc at shutdown).
With --sigint-only, only A and D (for the slow sanitizer build).
Usage: resume_check.py HALLU WORKDIR [METHOD] [--sigint-only]"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from safetensors_io import load_file  # noqa: E402
from train_checks import TrainChecks  # noqa: E402  (beside this script)

HALLU, WORK = sys.argv[1], sys.argv[2]
METHOD = sys.argv[3] if len(sys.argv) > 3 else "simclr"
SIGINT_ONLY = "--sigint-only" in sys.argv[4:]
# method -> (synthetic images, batch, flags); MoCo is small: it also runs under the sanitizers
IMAGES, BATCH, METHOD_ARGS = {
    "simclr": (160, 32, ["--method", "simclr"]),
    "mocov2": (96, 16, ["--method", "mocov2", "--hallucinator", "--queue-size", "32", "--bn-splits", "4"]),
}[METHOD]
ARGS = ["train", *METHOD_ARGS, "--data", f"synthetic:{IMAGES}", "--batch-size", str(BATCH), "--epochs", "2",
        "--lr", "0.05", "--threads", "2", "--workers", "2", "--seed", "3", "--log-every", "1",
        "--knn-k", "20", "--no-knn-floor"]
TIMING = {"images_per_s", "data_wait"}
checks = TrainChecks(HALLU, ARGS)
failures, run, check = checks.failures, checks.run, checks.check


def steps_logged(out):
    try:
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return [json.loads(line)["step"] for line in f if '"loss"' in line]
    except (OSError, ValueError):
        return []


def threads_taking_stop_signals(pid):
    """Threads of pid, other than its sigwait thread, that do not block SIGINT and SIGTERM
    (sigwait unblocks them while it waits). hallu train must have none: a handler run on
    a thread inside oneDNN 2.x's JIT sgemm (rsp points into the heap there) corrupts
    the heap."""
    need = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    open_to = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            name, blocked = status["Name"].strip(), int(status["SigBlk"], 16)
        except (OSError, KeyError):
            continue   # the thread ended meanwhile
        if blocked & need != need and name != "hallu-signals":
            open_to.append(tid)
    return open_to


def start_and_signal(out, sigs, min_step):
    """Start a run and, once it has logged min_step, send it sigs in order."""
    p = subprocess.Popen([HALLU] + ARGS + ["--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:
        if any(s >= min_step for s in steps_logged(out)):
            exposed = threads_taking_stop_signals(p.pid)
            if exposed:
                failures.append(f"{out}: threads {exposed} do not block SIGINT/SIGTERM")
            for sig in sigs:
                p.send_signal(sig)
            break
        time.sleep(0.05)
    _, stderr = p.communicate()
    return p.returncode, stderr.decode(errors="replace")[-2000:]


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def compare(name, out, ref):
    if not os.path.exists(os.path.join(out, "checkpoint.hlu")):
        failures.append(f"{name}: no checkpoint in {out}")
        return
    a, b = load_file(os.path.join(ref, "checkpoint.hlu")), load_file(os.path.join(out, "checkpoint.hlu"))
    if sorted(a) != sorted(b):
        failures.append(f"{name}: checkpoint tensor names differ")
    diff = [k for k in a if k in b and not (a[k].shape == b[k].shape and bool((a[k] == b[k]).all()))]
    if diff:
        failures.append(f"{name}: {len(diff)} tensors differ, e.g. {diff[:3]}")
    ma, mb = metrics(ref), metrics(out)
    if ma != mb:
        failures.append(f"{name}: metrics differ ({len(ma)} vs {len(mb)} lines)")
    print(f"{name}: {len(a)} tensors, {len(ma)} metrics lines: "
          f"{'identical' if not diff and ma == mb else 'DIFFERENT'}")


def case_b():
    run(B, "--stop-after-steps", "7", expect=130)
    run(B, "--resume")
    compare("B stop-after-steps", B, A)


def case_c():
    code, log = start_and_signal(C, [signal.SIGKILL], IMAGES // BATCH + 2)
    if code != -signal.SIGKILL:
        failures.append(f"C: expected death by SIGKILL, got exit {code}\n{log}")
    run(C, "--resume")
    compare("C SIGKILL", C, A)


def case_e():
    # Stopped, two distinct signals stay pending (a repeated SIGINT would merge into
    # one); on SIGCONT the signal thread takes both before the step can end.
    code, log = start_and_signal(E, [signal.SIGSTOP, signal.SIGINT, signal.SIGTERM, signal.SIGCONT], 2)
    if code != 130 or "no checkpoint had been saved yet" not in log:
        failures.append(f"E: expected exit 130 without saving after a second signal, got {code}\n{log}")
    if "starting the run again" not in run(E, "--resume").stderr:
        failures.append("E: --resume with no checkpoint yet did not say it starts the run again")
    compare("E second signal", E, A)


def case_d():
    code, log = start_and_signal(D, [signal.SIGINT], 2)
    if code != 130:
        failures.append(f"D: expected exit 130 after SIGINT, got {code}\n{log}")
    run(D, "--resume")
    compare("D SIGINT", D, A)


def refusals():
    """A used --out is never overwritten, and --resume never starts a run among someone else's files."""
    p = run(A, expect=1)
    if "not empty" not in p.stderr or "--resume to continue" not in p.stderr:
        failures.append(f"re-running into a used --out did not refuse with 'not empty', '--resume to continue': {p.stderr}")
    foreign = os.path.join(WORK, "foreign")
    os.makedirs(foreign)
    with open(os.path.join(foreign, "notes.txt"), "w") as f:
        f.write("not a run\n")
    p = run(foreign, "--resume", expect=1)
    if "files other than a run's" not in p.stderr or os.listdir(foreign) != ["notes.txt"]:
        failures.append(f"--resume into a folder without a run: {p.stderr.strip()[-300:]} / {os.listdir(foreign)}")
    p = run(foreign, expect=1)   # nor does a new run, and it does not suggest --resume there
    if "files other than a run's" not in p.stderr or "--resume" in p.stderr or os.listdir(foreign) != ["notes.txt"]:
        failures.append(f"a new run into a folder without a run: {p.stderr.strip()[-300:]} / {os.listdir(foreign)}")
    # a legal path (10 folders of 100 characters) too long for its run files' paths: refused, nothing made
    too_long = os.path.join(WORK, "long", *["x" * 100] * 10)
    p = run(too_long, expect=1)
    if "characters is too long" not in p.stderr or os.path.exists(os.path.join(WORK, "long")):
        failures.append(f"an --out too long for its run files: {p.stderr.strip()[-300:]}")


def check_export():
    """hallu export: the trained backbone loads into torchvision strictly."""
    exported = os.path.join(WORK, "A.safetensors")
    p = subprocess.run([HALLU, "export", "--checkpoint", os.path.join(A, "checkpoint.hlu"), "--out", exported],
                       capture_output=True, text=True)
    try:
        import torch.nn as nn
        import torchvision
        model = torchvision.models.resnet18()
        model.conv1, model.maxpool, model.fc = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity(), nn.Identity()
        model.load_state_dict(load_file(exported), strict=True)
        print("export: loads into torchvision resnet18 (cifar stem) with strict=True")
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding
        failures.append(f"export: {p.returncode} {p.stderr.strip()} / {e}")


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
A, B, C, E = (os.path.join(WORK, n) for n in "ABCE")
D = os.path.join(WORK, "nested", "runs", "D")   # a fresh --out whose parent folders do not exist yet
check(lambda: run(A))
for case in ([] if SIGINT_ONLY else [case_b, case_c, case_e]) + [case_d, refusals]:
    check(case)
if METHOD == "simclr":
    check(check_export)
sys.exit(checks.finish())
