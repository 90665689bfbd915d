#!/usr/bin/env python3
"""What `hallu train` says at the end, and its --crop flag.

  1. A short run on synthetic data gains over its untrained kNN floor and ends
     with the gain line, "kNN top-1 X% (+G over the untrained F%)", whose
     numbers agree with the summary lines.
  2. A run started (--init) from that run's exported backbone with lr 3 wrecks
     it and ends below its floor (the kNN of the weights it started from): the
     last lines are a plain warning that names both numbers, the loss in points
     and what usually helps (--epochs, --lr); metrics.jsonl records the
     (negative) knn_gain_top1. No gain line is printed.
  3. --crop rrc is accepted, recorded in config.json (and taken back from it by
     --config), changes the views (the first step's loss differs from ccrop's);
     --crop foo is refused (exit 1) naming the flag and the accepted values,
     before --out is created; --help lists --crop and --init.
Usage: train_messages_check.py HALLU WORKDIR"""
import json
import os
import re
import shutil
import sys
from train_checks import run_cli  # noqa: E402

HALLU, WORK = sys.argv[1], os.path.realpath(sys.argv[2])
SMALL = ["train", "--data", "synthetic:128", "--batch-size", "32", "--epochs", "1", "--threads", "2"]
failures = []


def run(args, expect=0):
    return run_cli(HALLU, args, failures, expect)


def number(pattern, text, what):
    m = re.search(pattern, text)
    if not m:
        failures.append(f"{what}: no match for {pattern!r} in:\n{text[-800:]}")
        return None
    return [float(g) for g in m.groups()]


def last_knn(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [r for r in map(json.loads, f) if "knn_top1" in r]
    return rows[-1] if rows else {}


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [r["loss"] for r in map(json.loads, f) if "loss" in r]


def summary(p, what):
    """(trained, untrained) kNN top-1 from the summary lines on stdout."""
    floor = number(r"untrained kNN top-1: ([0-9.]+)%", p.stdout, what)
    final = number(r"kNN top-1 accuracy: ([0-9.]+)%", p.stdout, what)
    return (final[0] if final else None), (floor[0] if floor else None)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
W = lambda *p: os.path.join(WORK, *p)  # noqa: E731

def closing_lines(p, what):
    """The last lines must judge the final kNN against the floor, consistently with the summary:
    the warning (last on stderr) when below, the gain line (last on stdout) otherwise. Returns
    (final, floor), or None where they could not be read."""
    final, floor = summary(p, what)
    if final is None or floor is None:
        return None
    last_out = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    tail = p.stderr.strip().splitlines()[-2:]
    if final < floor:
        got = number(r"^warning: training made the kNN accuracy worse: ([0-9.]+)% after training vs ([0-9.]+)% "
                     r"untrained \((-[0-9.]+) points\)\.$", tail[0] if tail else "", f"{what}: warning line")
        if got and not (got[0] == final and got[1] == floor and abs(got[2] - (final - floor)) < 0.006):
            failures.append(f"{what}: warning numbers {got} disagree with the summary: {final}% vs floor {floor}%")
        if len(tail) < 2 or "--epochs" not in tail[1] or "--lr" not in tail[1]:
            failures.append(f"{what}: the warning's last line does not name --epochs and --lr: {tail}")
        if "over the untrained" in p.stdout:
            failures.append(f"{what}: a run below its floor printed a gain line: {p.stdout}")
    else:
        got = number(r"^kNN top-1 ([0-9.]+)% \(\+([0-9.]+) over the untrained ([0-9.]+)%\)$", last_out,
                     f"{what}: gain line")
        if got and not (got[0] == final and got[2] == floor and abs(got[1] - (final - floor)) < 0.006):
            failures.append(f"{what}: gain line {got} disagrees with the summary: {final}% vs floor {floor}%")
        if "warning: training made" in p.stderr:
            failures.append(f"{what}: a run at or above its floor warned: {p.stderr[-400:]}")
    return final, floor


# 1. above the floor: the gain line comes last
LEARN = ["train", "--data", "synthetic:600", "--batch-size", "100", "--threads", "2"]
p = run(LEARN + ["--epochs", "4", "--out", W("better")])
if p.returncode == 0:
    got = closing_lines(p, "learning run")
    if got and not got[0] > got[1]:
        failures.append(f"the learning run did not end above its floor ({got[0]}% vs {got[1]}%): the gain line was "
                        "not exercised")
    run(["export", "--checkpoint", W("better", "checkpoint.hlu"), "--out", W("better.safetensors")])

# 2. below the floor: lr 3 from the learnt weights wrecks them; the warning comes last
p = run(LEARN + ["--epochs", "1", "--lr", "3", "--init", W("better.safetensors"), "--out", W("worse")])
if p.returncode == 0:
    got = closing_lines(p, "wrecked run")
    if got and not got[0] < got[1]:
        failures.append(f"the lr 3 run did not end below its floor ({got[0]}% vs {got[1]}%): the warning was not "
                        "exercised; find another setting")
    row = last_knn(W("worse"))
    if got and abs(row.get("knn_gain_top1", 99) - (got[0] - got[1])) > 0.011:   # printed values: 2 roundings
        failures.append(f"metrics.jsonl's last kNN line lacks knn_gain_top1 = {got[0] - got[1]:.2f}: {row}")

# 3. --crop
step1 = ["--data", "synthetic:64", "--no-knn-floor", "--stop-after-steps", "1", "--log-every", "1", "--seed", "2"]
run(SMALL + step1 + ["--out", W("ccrop")], expect=130)
run(SMALL + step1 + ["--crop", "rrc", "--out", W("rrc")], expect=130)
with open(W("rrc", "config.json")) as f:
    crop = json.load(f).get("crop")
with open(W("ccrop", "config.json")) as f:
    default_crop = json.load(f).get("crop")
if crop != "rrc" or default_crop != "ccrop":
    failures.append(f"config.json records crop {crop!r} for --crop rrc and {default_crop!r} by default")
elif losses(W("rrc")) == losses(W("ccrop")):
    failures.append(f"--crop rrc gave the same first loss as ccrop: {losses(W('rrc'))}")
run(["train", "--config", W("rrc", "config.json"), "--epochs", "0", "--no-knn-floor", "--out", W("rrc2")])
with open(W("rrc2", "config.json")) as f:
    if json.load(f).get("crop") != "rrc":
        failures.append("--config of a --crop rrc run did not record crop rrc")
p = run(SMALL + ["--crop", "foo", "--out", W("never")], expect=1)
if not all(s in p.stderr for s in ("--crop foo", "ccrop", "rrc")) or os.path.exists(W("never")):
    failures.append(f"--crop foo: message does not name the flag and the values, or --out was made: {p.stderr[-300:]}")
p = run(["train", "--help"])
if "--crop" not in p.stdout + p.stderr or "--init" not in p.stdout + p.stderr:
    failures.append("train --help does not list --crop and --init")

for f in failures:
    print("FAIL:", f)
print(f"{'FAILED' if failures else 'ok'}: train end-of-run messages and --crop ({len(failures)} failures)")
sys.exit(1 if failures else 0)
