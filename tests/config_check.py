#!/usr/bin/env python3
"""`hallu train --config FILE` reads flags from a run's config.json.

A run started from another run's config.json (same seed and threads) must log
the same losses and write the same config; flags on the command line override
the file (including --hallucinator over "hallucinator": 0); a bad file (unknown
key, wrong type, broken JSON, missing) exits 2 naming the file and the key.
Usage: config_check.py HALLU WORKDIR"""
import json
import os
import shutil
import sys
from train_checks import run_cli  # noqa: E402

HALLU, WORK = sys.argv[1], sys.argv[2]
BASE = ["train", "--method", "simclr", "--no-hallucinator", "--data", "synthetic:40", "--batch-size", "20",
        "--epochs", "1", "--lr", "0.05", "--threads", "2", "--seed", "5"]
EXTRA = ["--knn-k", "10", "--no-knn-floor", "--log-every", "1"]
failures = []


def run(args, expect=0):
    return run_cli(HALLU, args, failures, expect)


def config(out):
    with open(os.path.join(out, "config.json")) as f:
        return json.load(f)


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f) if "loss" in r]


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
a, b, c = (os.path.join(WORK, n) for n in "abc")
run(BASE + EXTRA + ["--out", a])
cfg_a = os.path.join(a, "config.json")
run(["train", "--config", cfg_a, "--out", b] + EXTRA)
if not failures:
    if config(b) != config(a):
        failures.append(f"config from --config differs:\n{config(a)}\n{config(b)}")
    if losses(b) != losses(a) or not losses(a):
        failures.append(f"losses differ: {losses(a)} vs {losses(b)}")
run(["train", "--config", cfg_a, "--epochs", "2", "--hallucinator", "--out", c] + EXTRA)
if not failures:
    got = config(c)
    if got["epochs"] != 2 or got["hallucinator"] != 1 or got["seed"] != 5 or got["batch_size"] != 20:
        failures.append(f"command-line flags did not override the file: {got}")

run(["train", "--config", cfg_a, "--fix-pred-lr", "--out", os.path.join(WORK, "never")], expect=1)
d, cfg_d = os.path.join(WORK, "d"), os.path.join(WORK, "simsiam.json")
with open(cfg_d, "w") as f:   # hand-written: true/false, a \u escape, keys in any order
    f.write('{"method": "simsiam", "fix_pred_lr": true, "hallucinator": false, "data": "synth\\u0065tic:40",\n'
            ' "epochs": 1, "batch_size": 20, "lr": 0.05, "threads": 2, "seed": 5}\n')
run(["train", "--config", cfg_d, "--out", d] + EXTRA)
if not failures:
    got = config(d)
    if got.get("fix_pred_lr") != 1 or got["method"] != "simsiam" or got["data"] != "synthetic:40":
        failures.append(f"hand-written config not applied: {got}")

bad = {"unknown.json": ('{"method": "simclr", "bogus_key": 1}', "bogus_key"),
       "type.json": ('{"epochs": "two"}', "epochs"),
       "broken.json": ('{"method": "simclr",', "broken.json"),
       "array.json": ('{"lr": [1, 2]}', "lr")}
for name, (text, needle) in bad.items():
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    p = run(["train", "--config", path, "--out", os.path.join(WORK, "never")], expect=2)
    if needle not in p.stderr or path not in p.stderr:
        failures.append(f"{name}: message does not name the file and '{needle}': {p.stderr!r}")
p = run(["train", "--config", os.path.join(WORK, "missing.json")], expect=2)
if os.path.exists(os.path.join(WORK, "never")):
    failures.append("a rejected --config still created the run directory")

for f in failures:
    print("FAIL:", f)
print(f"{'FAILED' if failures else 'ok'}: --config checks ({len(failures)} failures)")
sys.exit(1 if failures else 0)
