"""End-to-end checks of `hallu features|knn|linear|plot` (tests/eval_cli.cmake).

usage: eval_cli_check.py HALLU WORKDIR WEIGHTS {features,knn,linear,plot,usage}
Exits non-zero with a message on the first failed expectation."""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

HALLU, WORK, WEIGHTS, WHAT = sys.argv[1:5]
os.makedirs(WORK, exist_ok=True)   # a variant (e.g. on cpu-isolated) may get a folder of its own
DATA = "synthetic:40"          # 40 train / 10 test images, 10 classes, 32x32
COMMON = ["--weights", WEIGHTS, "--arch", "resnet18", "--stem", "cifar", "--threads", "2", "--workers", "2"]
EXTRACT = ["--batch-size", "16"]          # knn / features
PROBE_EXTRACT = ["--extract-batch-size", "16"]


def run(args, expect_rc=0):
    p = subprocess.run([HALLU] + args, capture_output=True, text=True, timeout=600)
    if p.returncode != expect_rc:
        sys.exit(f"hallu {' '.join(args)}: exit {p.returncode}, expected {expect_rc}\n"
                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def check(cond, msg):
    if not cond:
        sys.exit("FAIL: " + msg)


def no_temporaries(d):
    left = [f for f in os.listdir(d) if ".tmp." in f]
    check(not left, f"temporary files left in {d}: {left}")


def features():
    import numpy as np
    out = os.path.join(WORK, "feat.npy")
    run(["features", "--data", DATA, "--split", "test", "--out", out] + COMMON + EXTRACT)
    x = np.load(out)
    y = np.load(os.path.join(WORK, "feat.labels.npy"))
    check(x.dtype == np.float32 and x.shape == (10, 512), f"features {x.dtype} {x.shape}")
    check(y.dtype == np.int32 and y.shape == (10,), f"labels {y.dtype} {y.shape}")
    check(np.isfinite(x).all() and (x >= 0).all() and x.std() > 0, "features: finite, >= 0 after ReLU+pool, not constant")
    check(((y >= 0) & (y < 10)).all(), f"labels {y}")
    run(["features", "--data", DATA, "--split", "test", "--normalize", "--out", out] + COMMON + EXTRACT)
    xn = np.load(out)
    check(np.allclose(np.linalg.norm(xn, axis=1), 1, atol=1e-5), "normalised rows")
    check(np.allclose(xn, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-5), "same features, normalised")
    # Both cpu devices give the same bytes (cpu-isolated: device memory that host code cannot touch).
    outs = {}
    for device in ("cpu", "cpu-isolated"):
        o = os.path.join(WORK, f"feat-{device}.npy")
        run(["features", "--data", DATA, "--split", "test", "--device", device, "--out", o] + COMMON + EXTRACT)
        outs[device] = open(o, "rb").read()
    check(outs["cpu"] == outs["cpu-isolated"], "features differ between --device cpu and cpu-isolated")
    no_temporaries(WORK)


def knn():
    out = os.path.join(WORK, "knn.json")
    p = run(["knn", "--train-data", DATA, "--test-data", DATA, "--k", "20", "--json", out] + COMMON + EXTRACT)
    check("top-1" in p.stdout and "top-5" in p.stdout, p.stdout)
    r = json.load(open(out))
    check(0 <= r["knn_top1"] <= r["knn_top5"] <= 100 and r["test_samples"] == 10 and r["train_samples"] == 40
          and r["k"] == 20 and r["feature_dim"] == 512, str(r))
    # Reference set == query set: with k = 1 each image finds itself (cosine 1): 100%.
    p = run(["knn", "--train-data", DATA, "--test-data", DATA, "--test-split", "train", "--k", "1",
             "--json", out] + COMMON + EXTRACT)
    r = json.load(open(out))
    check(r["knn_top1"] == 100.0, f"self-retrieval {r}")
    # Both cpu devices print the same numbers.
    lines = {}
    for device in ("cpu", "cpu-isolated"):
        p = run(["knn", "--train-data", DATA, "--test-data", DATA, "--k", "20", "--device", device] + COMMON + EXTRACT)
        lines[device] = p.stdout
    check(lines["cpu"] == lines["cpu-isolated"], f"knn differs between devices: {lines}")
    no_temporaries(WORK)


def linear():
    metrics = os.path.join(WORK, "probe.jsonl")
    head = os.path.join(WORK, "head.safetensors")
    for f in (metrics,):
        if os.path.exists(f):
            os.remove(f)
    p = run(["linear", "--train-data", DATA, "--test-data", DATA, "--epochs", "3", "--milestones", "2",
             "--lr", "1", "--batch-size", "16", "--cache-features", "--metrics", metrics, "--save-head", head] + COMMON + PROBE_EXTRACT)
    check("final top-1" in p.stdout, p.stdout)
    lines = [json.loads(l) for l in open(metrics)]
    check([l["epoch"] for l in lines] == [0, 1, 2], str(lines))
    check(abs(lines[1]["lr"] - 1) < 1e-9 and abs(lines[2]["lr"] - 0.1) < 1e-9, str(lines))
    with open(head, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
    check(hdr["fc.weight"]["shape"] == [10, 512] and hdr["fc.bias"]["shape"] == [10], str(hdr))
    # The augmented protocol runs too (1 epoch).
    p = run(["linear", "--train-data", DATA, "--test-data", DATA, "--epochs", "1", "--lr", "1",
             "--batch-size", "16"] + COMMON + PROBE_EXTRACT)
    check("augmented" in p.stdout, p.stdout)
    no_temporaries(WORK)


def plot():
    rundir = os.path.join(WORK, "run")
    os.makedirs(rundir, exist_ok=True)
    with open(os.path.join(rundir, "metrics.jsonl"), "w") as f:
        f.write('{"epoch": 0, "step": 0, "knn_floor_top1": 12.5, "knn_floor_top5": 50}\n')
        for e in range(6):
            for s in range(1, 5):
                step = e * 4 + s
                f.write(json.dumps({"epoch": e, "step": step, "loss": 7 - 0.2 * step, "lr": 0.5 * (1 - step / 24),
                                    "images_per_s": 900.0, "data_wait": 0.02}) + "\n")
            f.write(json.dumps({"epoch": e, "step": e * 4 + 4, "knn_top1": 20.0 + 5 * e, "knn_top5": 70.0}) + "\n")
    p = run(["plot", rundir])
    svg = os.path.join(rundir, "training.svg")
    check(svg in p.stdout, p.stdout)
    root = ET.parse(svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    check(root.tag == ns + "svg", root.tag)
    lines = {pl.get("class"): pl.get("points").split() for pl in root.iter(ns + "polyline")}
    check(set(lines) == {"loss", "lr", "knn"}, str(lines.keys()))
    check(len(lines["loss"]) == 24 and len(lines["lr"]) == 24 and len(lines["knn"]) == 6,
          str({k: len(v) for k, v in lines.items()}))
    xs = [float(p.split(",")[0]) for p in lines["loss"]]
    check(xs == sorted(xs) and len(set(xs)) == 24, "loss x increasing")
    ys = [float(p.split(",")[1]) for p in lines["loss"]]
    check(ys == sorted(ys), "falling loss drawn downwards (SVG y grows downwards)")
    texts = [t.text for t in root.iter(ns + "text")]
    check(len(texts) > 20 and "learning rate" in texts, "tick labels and titles")
    no_temporaries(rundir)
    run(["plot", os.path.join(WORK, "no-such-run")], expect_rc=1)


def usage():
    out = os.path.join(WORK, "x.npy")
    for cmd in ("knn", "linear", "features", "plot"):
        p = run([cmd, "--help"])
        check("usage: hallu " + cmd in p.stdout, p.stdout)
    p = run(["knn", "--help"])
    for flag in ("--k", "--temperature", "--train-data", "--test-data", "--checkpoint", "--weights",
                 "--batch-size", "--threads", "--device", "(default: 200)", "(default: 0.1)", "(default: 256)"):
        check(flag in p.stdout, "knn --help lacks " + flag)
    p = run(["linear", "--help"])
    for flag in ("--epochs", "--lr", "--batch-size", "--extract-batch-size", "--cache-features", "--milestones", "(default: 100)",
                 "(default: 10)", "(default: 512)", "(default: 60,80)"):
        check(flag in p.stdout, "linear --help lacks " + flag)
    bad = [
        ["knn", "--train-data", DATA] + COMMON,                               # no --test-data
        ["knn", "--train-data", DATA, "--test-data", DATA, "--k", "0"] + COMMON,
        ["knn", "--train-data", DATA, "--test-data", DATA, "--temperature", "x"] + COMMON,
        ["knn", "--train-data", DATA, "--test-data", DATA],                   # no backbone
        ["knn", "--train-data", DATA, "--test-data", DATA, "--checkpoint", "a", "--weights", "b"],
        ["knn", "--train-data", DATA, "--test-data", DATA, "--bogus"] + COMMON,
        ["knn", "--train-data", DATA, "--test-data", DATA, "--test-split", "sideways"] + COMMON,
        ["knn", "--train-data", DATA, "--test-data", DATA, "--mean-std", "lab"] + COMMON,
        ["knn", "--train-data", DATA, "--test-data", DATA, "--weights", WEIGHTS, "--arch", "resnet19"],
        ["linear", "--train-data", DATA, "--test-data", DATA, "--milestones", "80,60"] + COMMON,
        ["linear", "--train-data", DATA, "--test-data", DATA, "--lr", "-1"] + COMMON,
        ["linear", "--train-data", DATA, "--test-data", DATA, "--epochs", "0"] + COMMON,
        ["knn", "--train-data", DATA, "--test-data", DATA, "--batch-size", "0"] + COMMON,
        ["features", "--data", DATA, "--out", os.path.join(WORK, "x.txt")] + COMMON,
        ["features", "--out", out] + COMMON,
        ["plot"],
        ["plot", "a", "b"],
    ]
    for args in bad:
        p = run(args, expect_rc=2)
        check(p.stderr.startswith("error:"), f"{args}: {p.stderr}")
    # An unknown device is a usage error naming the flag, the name and the devices there are.
    for cmd in (["knn", "--train-data", DATA, "--test-data", DATA], ["linear", "--train-data", DATA, "--test-data", DATA],
                ["features", "--data", DATA, "--out", out]):
        check("--device" in run([cmd[0], "--help"]).stdout, cmd[0] + " --help lacks --device")
        p = run(cmd + ["--device", "tpu9"] + COMMON, expect_rc=2)
        check(p.stderr.startswith("error: --device tpu9") and "cpu-isolated" in p.stderr, f"{cmd[0]}: {p.stderr}")
    # Runtime failures exit 1 with a message naming the culprit.
    p = run(["knn", "--train-data", "cifar10:/nonexistent", "--test-data", DATA] + COMMON, expect_rc=1)
    check("/nonexistent" in p.stderr, p.stderr)
    p = run(["knn", "--train-data", DATA, "--test-data", DATA, "--weights", os.path.join(WORK, "none.safetensors")],
            expect_rc=1)
    check("none.safetensors" in p.stderr, p.stderr)
    check(not os.path.exists(out), "nothing written on usage errors")


{"features": features, "knn": knn, "linear": linear, "plot": plot, "usage": usage}[WHAT]()
print("ok", WHAT)
