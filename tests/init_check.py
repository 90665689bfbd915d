#!/usr/bin/env python3
"""`hallu train --init FILE.safetensors` starts the backbone from torchvision-named weights.

  1. A backbone exported (with --heads) from a short run loads bit for bit: a
     MoCo v2 run with --init and --epochs 0 (no step; the initial checkpoint is
     saved) holds every backbone tensor of the file, BN running statistics and
     num_batches_tracked included, in its query encoder AND its key encoder;
     config.json records the file; --resume with another --init is refused.
  2. torchvision resnet18 state dicts (tools/torchvision_to_safetensors.py,
     fc.* and all) load: CIFAR stem bit for bit (--epochs 0), ImageNet stem
     trains an epoch with finite losses.
  3. Files that do not fit are refused (exit 1) with a message that names the
     file, the architecture and a tensor, and nothing is written into --out:
     resnet50 into --arch resnet18, the ImageNet stem into --stem cifar, a
     missing tensor, a missing file.
Usage: init_check.py HALLU WORKDIR"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import torch  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402
import torchvision_to_safetensors as tv  # noqa: E402
from train_checks import run_cli  # noqa: E402

HALLU, WORK = sys.argv[1], os.path.realpath(sys.argv[2])
BASE = ["train", "--data", "synthetic:64", "--batch-size", "32", "--threads", "2", "--seed", "3"]
HEADS = ("fc.", "projector.", "predictor.", "hallucinator.")
failures = []


def run(args, expect=0):
    return run_cli(HALLU, args, failures, expect)


def bits(t):
    """The raw bytes of a tensor (float32 compared bit for bit, counters as int64)."""
    return t.contiguous().view(torch.uint8) if t.is_floating_point() else t.contiguous()


def backbone(tensors):
    return {k: v for k, v in tensors.items() if not k.startswith(HEADS)}


def same_bits(label, want, got, counters_as_float=False):
    """Every tensor of want is in got with the same shape and bits."""
    if set(want) != set(got):
        failures.append(f"{label}: tensor names differ: only in file {sorted(set(want) - set(got))[:4]}, "
                        f"only in run {sorted(set(got) - set(want))[:4]}")
        return
    bad = []
    for k, w in want.items():
        g = got[k]
        if k.endswith("num_batches_tracked"):
            ok = int(w.reshape(-1)[0]) == int(g.reshape(-1)[0])
        else:
            ok = w.shape == g.shape and w.dtype == g.dtype and torch.equal(bits(w), bits(g))
        if not ok:
            bad.append(k)
    if bad:
        failures.append(f"{label}: {len(bad)} tensors differ from the --init file, e.g. {bad[:4]}")


def checkpoint_part(out, prefix):
    st = load_file(os.path.join(out, "checkpoint.hlu"))
    return {k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}


def refused(args, out, needles):
    p = run(args + ["--out", out], expect=1)
    missing = [n for n in needles if n not in p.stderr]
    if missing:
        failures.append(f"{' '.join(args)}: message lacks {missing}: {p.stderr.strip()[-600:]}")
    if os.path.exists(out):
        failures.append(f"{' '.join(args)}: a refused --init still wrote {out}: {os.listdir(out)}")


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
W = lambda *p: os.path.join(WORK, *p)  # noqa: E731

# 1. export -> --init, bit for bit, query and key encoder
run(BASE + ["--epochs", "1", "--no-knn-floor", "--out", W("a")])
run(["export", "--checkpoint", W("a", "checkpoint.hlu"), "--out", W("a.safetensors"), "--heads"])
if not failures:
    exported = load_file(W("a.safetensors"))
    want = backbone(exported)
    if not any(k.startswith("projector.") for k in exported) or not any(k.endswith("running_var") for k in want):
        failures.append(f"export --heads wrote no heads or no BN statistics: {sorted(exported)[:6]}")
    if all(float(v.reshape(-1)[0]) == 0 for k, v in want.items() if k.endswith("running_mean")):
        failures.append("the exported BN running means are all zero: the bit check would not test them")
    run(BASE + ["--method", "mocov2", "--queue-size", "64", "--epochs", "0", "--no-knn-floor",
                "--init", W("a.safetensors"), "--out", W("b")])
    if not failures:
        same_bits("query encoder after --init", want, checkpoint_part(W("b"), "model.encoder."))
        key = checkpoint_part(W("b"), "ssl.key.encoder.")   # F32 blobs, counters included
        want_f32 = {k: (v.float() if k.endswith("num_batches_tracked") else v) for k, v in want.items()}
        same_bits("MoCo key encoder after --init", want_f32, key)
        with open(W("b", "config.json")) as f:
            cfg = json.load(f)
        if cfg.get("init") != W("a.safetensors"):
            failures.append(f"config.json records init {cfg.get('init')!r}, expected {W('a.safetensors')!r}")
        other = W("other.safetensors")
        shutil.copy(W("a.safetensors"), other)
        p = run(BASE + ["--method", "mocov2", "--queue-size", "64", "--epochs", "0", "--no-knn-floor",
                        "--init", other, "--resume", "--out", W("b")], expect=1)
        if "--init" not in p.stderr or W("a.safetensors") not in p.stderr:
            failures.append(f"--resume with another --init: message does not name the recorded file: {p.stderr[-400:]}")
        run(["train", "--config", W("b", "config.json"), "--resume", "--out", W("b")])   # its own config: fine

# 2. torchvision resnet18, CIFAR stem bit for bit, ImageNet stem trains
tv18c = tv.convert(W("tv18_cifar.safetensors"), "resnet18", "cifar", seed=1, bn_batches=2)
tv18i = tv.convert(W("tv18_imagenet.safetensors"), "resnet18", "imagenet", seed=2, bn_batches=1)
if "fc.weight" not in tv18c or "bn1.num_batches_tracked" not in tv18c:
    failures.append(f"the torchvision file lacks fc.weight or num_batches_tracked: {sorted(tv18c)[:6]}")
run(BASE + ["--epochs", "0", "--no-knn-floor", "--init", W("tv18_cifar.safetensors"), "--out", W("c")])
if not failures:
    same_bits("torchvision resnet18 (cifar stem) after --init", backbone(tv18c), checkpoint_part(W("c"), "model.encoder."))
run(BASE + ["--epochs", "1", "--stem", "imagenet", "--no-hallucinator", "--no-knn-floor",
            "--init", W("tv18_imagenet.safetensors"), "--out", W("d")])
if not failures:
    with open(W("d", "metrics.jsonl")) as f:
        losses = [r["loss"] for r in map(json.loads, f) if "loss" in r]
    if not losses or not all(l == l and abs(l) < 1e6 for l in losses):
        failures.append(f"training from torchvision's resnet18 (imagenet stem) logged losses {losses}")

# 3. refusals: nothing written into --out
tv.convert(W("tv50.safetensors"), "resnet50", "cifar", seed=0)
refused(BASE + ["--init", W("tv50.safetensors")], W("e1"),
        ["--init " + W("tv50.safetensors"), "do not fit --arch resnet18", "layer1.0.conv1.weight is [64,64,1,1], "
         "expected [64,64,3,3]", " unexpected"])
os.remove(W("tv50.safetensors"))   # 90 MB
refused(BASE + ["--init", W("tv18_imagenet.safetensors")], W("e2"),
        ["1 tensor does not fit --arch resnet18 --stem cifar", "conv1.weight is [64,3,7,7], expected [64,3,3,3]"])
cut = dict(tv18c)
del cut["layer3.1.bn2.running_var"]
save_file(cut, W("cut.safetensors"))
refused(BASE + ["--init", W("cut.safetensors")], W("e3"), ["layer3.1.bn2.running_var missing"])
refused(BASE + ["--init", W("nothing.safetensors")], W("e4"), [W("nothing.safetensors"), "No such file"])

for f in failures:
    print("FAIL:", f)
print(f"{'FAILED' if failures else 'ok'}: --init checks ({len(failures)} failures)")
sys.exit(1 if failures else 0)
