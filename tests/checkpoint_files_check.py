#!/usr/bin/env python3
"""--save-every and --keep-best: which checkpoints a run keeps, and what is in them.

U: one run of 3 epochs with kNN after every epoch, --save-every 1 and --keep-best:
  - checkpoint_epoch1..3.hlu exist and the last equals checkpoint.hlu, tensor for tensor;
  - checkpoint_best.hlu equals checkpoint_epochE.hlu, E the first epoch with the highest
    kNN top-1 in metrics.jsonl, and records that top-1 as best_knn_top1; so does every
    later checkpoint (the best so far travels with the run).
R: the same run stopped in epoch 3 and resumed: its checkpoint_best.hlu equals U's. When
  epoch 3 does not beat the earlier ones, this proves that the best so far survived the
  resume (a resume that forgot it would save epoch 3 as the best).
Usage: checkpoint_files_check.py HALLU WORKDIR"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from safetensors_io import load_file  # noqa: E402
from train_checks import TrainChecks  # noqa: E402  (beside this script)

HALLU, WORK = sys.argv[1], sys.argv[2]
IMAGES, BATCH, EPOCHS = 160, 32, 3
ARGS = ["train", "--method", "simclr", "--data", f"synthetic:{IMAGES}", "--batch-size", str(BATCH),
        "--epochs", str(EPOCHS), "--lr", "0.05", "--threads", "2", "--workers", "2", "--seed", "3",
        "--knn-k", "20", "--no-knn-floor", "--knn-every", "1", "--save-every", "1", "--keep-best"]
checks = TrainChecks(HALLU, ARGS)
failures, run, check = checks.failures, checks.run, checks.check


def meta(path):
    return load_file(path, with_metadata=True)[1] or {}


def same_tensors(a_path, b_path):
    a, b = load_file(a_path), load_file(b_path)
    return sorted(a) == sorted(b) and all(a[k].shape == b[k].shape and bool((a[k] == b[k]).all()) for k in a)


def knn_by_epoch(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [r["knn_top1"] for r in rows if "knn_top1" in r]


def uninterrupted():
    run(U)
    knn = knn_by_epoch(U)
    if len(knn) != EPOCHS:
        failures.append(f"U: {len(knn)} kNN lines, expected {EPOCHS}")
        return
    files = sorted(f for f in os.listdir(U) if f.startswith("checkpoint_epoch"))
    if files != [f"checkpoint_epoch{e}.hlu" for e in range(1, EPOCHS + 1)]:
        failures.append(f"U: periodic checkpoints {files}")
        return
    if not same_tensors(os.path.join(U, f"checkpoint_epoch{EPOCHS}.hlu"), os.path.join(U, "checkpoint.hlu")):
        failures.append("U: checkpoint_epoch3.hlu differs from the final checkpoint.hlu")
    best_epoch = knn.index(max(knn)) + 1
    print(f"U: kNN top-1 by epoch {knn}; best: epoch {best_epoch}")
    if not same_tensors(os.path.join(U, "checkpoint_best.hlu"), os.path.join(U, f"checkpoint_epoch{best_epoch}.hlu")):
        failures.append(f"U: checkpoint_best.hlu is not checkpoint_epoch{best_epoch}.hlu")
    for name in ["checkpoint_best.hlu", "checkpoint.hlu"] + files[best_epoch - 1:]:
        recorded = float(meta(os.path.join(U, name)).get("best_knn_top1", "nan"))
        if abs(recorded - max(knn)) > 1e-9:
            failures.append(f"U: {name} records best_knn_top1 {recorded}, expected {max(knn)}")


def resumed():
    run(R, "--stop-after-steps", str(2 * (IMAGES // BATCH) + 1), expect=130)
    run(R, "--resume")
    knn = knn_by_epoch(U)
    last_beats = len(knn) == EPOCHS and knn[-1] > max(knn[:-1])
    if last_beats:
        print("R: note: epoch 3 beats the earlier epochs here, so this case cannot tell whether the resume kept "
              "the best so far")
    same = same_tensors(os.path.join(R, "checkpoint_best.hlu"), os.path.join(U, "checkpoint_best.hlu"))
    if not same:
        failures.append("R: checkpoint_best.hlu after stop + resume differs from the uninterrupted run's")
    print(f"R: checkpoint_best.hlu {'equals' if same else 'differs from'} U's")


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
U, R = os.path.join(WORK, "U"), os.path.join(WORK, "R")
check(uninterrupted)
check(resumed)
sys.exit(checks.finish())
