"""`hallu features|knn|linear` on ImageFolder datasets (tests/eval_folder.cmake).

usage: eval_folder_check.py HALLU WORKDIR WEIGHTS CIFAR_JPEG_TAR_GZ {native,layouts,mixed}

Builds small JPEG/PNG folders in WORKDIR: from the CIFAR-10 JPEG archive when it
exists (60 of its test images, 6 per class), else from PIL-drawn 32x32 shapes.
  native   features at the images' native size (32x32 JPEG, 64x64 PNG) equal
           torchvision's resnet18 on the same weights (strict load) and
           PIL-decoded images to <= 1e-5 norm-relative; --image-size 32 on 32x32
           images is the identity (bit-equal), another size resizes.
  layouts  knn / linear / features on a train/test folder, a train/val folder
           and a single-split folder; train on a single-split folder (no kNN
           monitor, checkpoint saved).
  mixed    a folder with one 40x32 image: every command names that file and
           its size, or (--image-size N) resizes every image as documented.
Prints "N passed, M failed" and exits non-zero on any failed check."""
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image

HALLU, WORK, WEIGHTS, CIFAR_TAR, WHAT = sys.argv[1:6]
WORK = os.path.join(WORK, WHAT)       # each case its own folder: ctest runs them in parallel
COMMON = ["--arch", "resnet18", "--stem", "cifar", "--threads", "2", "--workers", "2"]
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR_STD = np.array([0.2023, 0.1994, 0.2010], dtype=np.float32)   # hallu's --mean-std cifar
CLASSES = 10
PER_CLASS = 6            # 4 train + 2 test
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(f"{'ok' if cond else 'FAIL'} {name}{': ' + detail if detail else ''}")


def run(args, expect_rc=0):
    p = subprocess.run([HALLU] + args, capture_output=True, text=True, timeout=600)
    if p.returncode != expect_rc:
        print(f"hallu {' '.join(args)}: exit {p.returncode}, expected {expect_rc}\n"
              f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def source_images():
    """CLASSES x PER_CLASS RGB uint8 32x32 arrays and the class names."""
    if os.path.isfile(CIFAR_TAR):
        imgs, names = {}, set()
        with tarfile.open(CIFAR_TAR) as tar:
            for m in tar:
                parts = m.name.split("/")   # cifar10/test/<class>/NNNN.jpg
                if len(parts) == 4 and parts[1] == "test" and parts[3] < f"{PER_CLASS:04d}":
                    names.add(parts[2])
                    # The archive's own JPEG bytes, so decoding is tested on real files.
                    imgs[(parts[2], parts[3])] = tar.extractfile(m).read()
        names = sorted(names)
        return names, {c: [imgs[(c, f"{i:04d}.jpg")] for i in range(PER_CLASS)] for c in names}, "CIFAR-10"
    rng = np.random.default_rng(0)
    names = [f"shape{c}" for c in range(CLASSES)]
    out = {}
    yy, xx = np.mgrid[0:32, 0:32]
    for c, name in enumerate(names):
        out[name] = []
        for i in range(PER_CLASS):
            freq = 0.2 + 0.15 * c
            base = 128 + 100 * np.sin(freq * xx + rng.uniform(0, 6)) * np.cos(0.1 * c * yy)
            rgb = np.stack([base, base[::-1], base.T], -1) + rng.normal(0, 8, (32, 32, 3))
            out[name].append(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)))
    return names, out, "PIL-drawn shapes"


def save(img, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(img, bytes):
        with open(path, "wb") as f:
            f.write(img)
    else:
        img.save(path, quality=90)


def pil(img):
    import io
    return Image.open(io.BytesIO(img)) if isinstance(img, bytes) else img


def build_folders():
    """train/test, train/val and single-split JPEG folders, a 64x64 PNG folder."""
    names, imgs, origin = source_images()
    root = os.path.join(WORK, "folders")
    shutil.rmtree(root, ignore_errors=True)
    for c in names:
        for i, img in enumerate(imgs[c]):
            split = "train" if i < 4 else "test"
            save(img, os.path.join(root, "tt", split, c, f"{i:04d}.jpg"))
            save(img, os.path.join(root, "tv", "val" if split == "test" else "train", c, f"{i:04d}.jpg"))
            save(img, os.path.join(root, "single", c, f"{i:04d}.jpg"))
            big = pil(img).convert("RGB").resize((64, 64), Image.BILINEAR)
            save(big, os.path.join(root, "png64", c, f"{i:04d}.png"))
    print(f"folders from {origin}: {len(names)} classes x {PER_CLASS} images in {root}")
    return root, names


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))


def weights_with_bn_statistics():
    """The fixture's weights with BN running statistics away from 0/1, so that
    eval-mode batch norm is part of what the comparison checks."""
    import torch
    from safetensors_io import load_file, save_file
    w = load_file(WEIGHTS)
    g = torch.Generator().manual_seed(0)
    for k, t in w.items():
        if k.endswith("running_mean"):
            w[k] = 0.2 * torch.randn(t.shape, generator=g)
        elif k.endswith("running_var"):
            w[k] = 0.5 + torch.rand(t.shape, generator=g)
    path = os.path.join(WORK, "weights_bn.safetensors")
    save_file(w, path)
    return path


def torch_features(paths, weights):
    import torch
    import torch.nn as nn
    import torchvision
    from safetensors_io import load_file
    torch.set_num_threads(2)
    model = torchvision.models.resnet18()
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    model.load_state_dict(load_file(weights), strict=True)
    model.eval()
    x = np.stack([(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255 - CIFAR_MEAN) / CIFAR_STD
                  for p in paths])
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def folder_files(d):
    """Files in ImageFolder order (classes and names sorted by strcmp) and labels."""
    classes = sorted(os.listdir(d))
    files = [(os.path.join(d, c, f), k) for k, c in enumerate(classes) for f in sorted(os.listdir(os.path.join(d, c)))]
    return [f for f, _ in files], np.array([k for _, k in files], dtype=np.int32)


def features(spec, split, out, *extra, weights=WEIGHTS):
    p = run(["features", "--weights", weights, "--data", spec, "--split", split, "--out", out] + COMMON
            + list(extra))
    if p.returncode != 0:
        return None, None
    return np.load(out), np.load(out[:-4] + ".labels.npy")


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def native():
    root, _ = build_folders()
    weights = weights_with_bn_statistics()
    out = os.path.join(WORK, "f.npy")
    for spec, split, d, what in [(f"imagefolder:{root}/tt", "test", f"{root}/tt/test", "32x32 JPEG, test split"),
                                 (f"imagefolder:{root}/png64", "train", f"{root}/png64", "64x64 PNG, single split")]:
        x, y = features(spec, split, out, weights=weights)
        paths, labels = folder_files(d)
        if x is None:
            check(f"features {what}", False, "hallu features failed")
            continue
        want = torch_features(paths, weights)
        e = rel(x, want)
        check(f"features {what} vs torchvision on PIL-decoded images", x.shape == want.shape and e <= 1e-5,
              f"{x.shape}, rel err {e:.2e} (<= 1e-5)")
        check(f"labels {what}", np.array_equal(y, labels), f"{y.tolist()}")
    x, _ = features(f"imagefolder:{root}/tt", "test", out)
    x32, _ = features(f"imagefolder:{root}/tt", "test", out, "--image-size", "32")
    check("--image-size 32 on 32x32 images is the identity", x is not None and x32 is not None
          and np.array_equal(x, x32), "bit-equal features")
    x28, _ = features(f"imagefolder:{root}/tt", "test", out, "--image-size", "28")
    check("--image-size 28 resizes and crops", x28 is not None and x28.shape == x.shape and rel(x28, x) > 1e-3,
          f"rel diff {rel(x28, x):.3f}" if x28 is not None else "failed")
    p = run(["features", "--help"])
    check("--help says what --image-size does", "N*8/7" in p.stdout and "passes unchanged" in p.stdout)


def knn(train, test, *extra):
    out = os.path.join(WORK, "knn.json")
    if os.path.exists(out):
        os.remove(out)
    p = run(["knn", "--weights", WEIGHTS, "--train-data", train, "--test-data", test, "--json", out] + COMMON
            + list(extra))
    return json.load(open(out)) if p.returncode == 0 else None


def layouts():
    root, names = build_folders()
    n_train, n_test = CLASSES * 4, CLASSES * 2
    for layout in ["tt", "tv"]:
        r = knn(f"imagefolder:{root}/{layout}", f"imagefolder:{root}/{layout}", "--k", "5")
        check(f"knn on train/{'test' if layout == 'tt' else 'val'} layout",
              r is not None and r["train_samples"] == n_train and r["test_samples"] == n_test
              and 0 <= r["knn_top1"] <= r["knn_top5"] <= 100, str(r))
    # Reference set == query set with k = 1: every image finds itself (cosine 1).
    r = knn(f"imagefolder:{root}/single", f"imagefolder:{root}/single", "--test-split", "train", "--k", "1")
    check("knn on a single-split folder (k=1, itself as reference)",
          r is not None and r["knn_top1"] == 100 and r["train_samples"] == CLASSES * PER_CLASS, str(r))
    p = run(["knn", "--weights", WEIGHTS, "--train-data", f"imagefolder:{root}/single", "--test-data",
             f"imagefolder:{root}/single"] + COMMON, expect_rc=1)
    check("a single-split folder has no test split: named error", p.returncode == 1 and "test" in p.stderr
          and f"{root}/single" in p.stderr, p.stderr.strip())
    metrics = os.path.join(WORK, "linear.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    p = run(["linear", "--weights", WEIGHTS, "--train-data", f"imagefolder:{root}/tt", "--test-data",
             f"imagefolder:{root}/tt", "--epochs", "2", "--batch-size", "16", "--metrics", metrics] + COMMON)
    lines = [json.loads(s) for s in open(metrics)] if p.returncode == 0 else []
    check("linear on a train/test folder (augmented views)", p.returncode == 0 and "final top-1" in p.stdout
          and len(lines) == 2, p.stdout.strip())
    p = run(["linear", "--weights", WEIGHTS, "--train-data", f"imagefolder:{root}/tv", "--test-data",
             f"imagefolder:{root}/tv", "--epochs", "1", "--cache-features"] + COMMON)
    check("linear --cache-features on a train/val folder", p.returncode == 0 and "final top-1" in p.stdout,
          p.stdout.strip())
    # Training on a single-split folder: no held-out set, so no kNN monitor (said at the start) and the
    # run's checkpoint is saved; a --knn-test-data that cannot be opened fails before anything is written.
    out = os.path.join(WORK, "single-run")
    shutil.rmtree(out, ignore_errors=True)
    train = ["train", "--data", f"imagefolder:{root}/single", "--epochs", "1", "--batch-size", "20", "--threads", "2",
             "--workers", "1", "--out", out]
    p = run(train)
    check("train on a single-split folder: no kNN monitor, checkpoint saved", p.returncode == 0
          and "no kNN monitor" in p.stderr and "no kNN" in p.stdout
          and os.path.isfile(os.path.join(out, "checkpoint.hlu")), p.stdout.strip() + " | " + p.stderr.strip()[-300:])
    shutil.rmtree(out, ignore_errors=True)
    p = run(train + ["--knn-test-data", f"imagefolder:{root}/missing"], expect_rc=1)
    check("train with a missing --knn-test-data fails at once, writing nothing", p.returncode == 1
          and "--knn-test-data" in p.stderr and not os.path.exists(out), p.stderr.strip()[-300:])
    x, y = features(f"imagefolder:{root}/single", "train", os.path.join(WORK, "s.npy"))
    check("features on a single-split folder", x is not None and x.shape == (CLASSES * PER_CLASS, 512)
          and np.array_equal(y, folder_files(f"{root}/single")[1]))


def mixed():
    root, names = build_folders()
    d = os.path.join(root, "mixed")
    shutil.copytree(os.path.join(root, "tt"), d)
    odd = os.path.join(d, "train", names[3], "0002.jpg")
    Image.open(odd).convert("RGB").resize((32, 40), Image.BILINEAR).save(odd, quality=90)
    spec = f"imagefolder:{d}"

    def names_odd(p, what):
        check(f"{what}: exit 1 naming the 40x32 file", p.returncode == 1 and odd in p.stderr and "40x32" in p.stderr,
              p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "no message")

    out = os.path.join(WORK, "m.npy")
    for f in [out, out[:-4] + ".labels.npy"]:
        if os.path.exists(f):
            os.remove(f)
    names_odd(run(["features", "--weights", WEIGHTS, "--data", spec, "--split", "train", "--out", out] + COMMON,
                  expect_rc=1), "features")
    check("features: nothing written on error", not os.path.exists(out))
    names_odd(run(["knn", "--weights", WEIGHTS, "--train-data", spec, "--test-data", spec] + COMMON, expect_rc=1),
              "knn")
    # The probe's training views are RandomResizedCrops, which take any size...
    p = run(["linear", "--weights", WEIGHTS, "--train-data", spec, "--test-data", spec, "--epochs", "1"] + COMMON)
    check("linear (augmented views) trains on the mixed train split", p.returncode == 0 and "final top-1" in p.stdout)
    # ...but its cached features are extracted at one size.
    names_odd(run(["linear", "--weights", WEIGHTS, "--train-data", spec, "--test-data", spec, "--epochs", "1",
                   "--cache-features"] + COMMON, expect_rc=1), "linear --cache-features")
    run_dir = os.path.join(WORK, "mixed-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    names_odd(run(["train", "--data", spec, "--out", run_dir, "--epochs", "1", "--batch-size", "8", "--threads", "2",
                   "--workers", "1"], expect_rc=1), "train")
    names_odd(run(["data", "pack", "--data", spec, "--out", os.path.join(WORK, "m.hpk")], expect_rc=1), "data pack")
    p = run(["data", "info", "--data", spec])
    check("data info reports variable sizes and names the 40x32 file", p.returncode == 0 and "variable" in p.stdout
          and odd in p.stdout and "40x32" in p.stdout)
    # --image-size N: every image of a mixed folder is resized (shorter side N*8/7) and centre-cropped.
    x, _ = features(spec, "train", out, "--image-size", "32")
    x_tt, _ = features(f"imagefolder:{root}/tt", "train", os.path.join(WORK, "t.npy"), "--image-size", "32")
    check("features --image-size 32 on the mixed folder", x is not None and x.shape == (CLASSES * 4, 512))
    # The other images went through resize(36) + crop(32): not the native features.
    check("a mixed folder is resized as a whole", x is not None and x_tt is not None and rel(x[:8], x_tt[:8]) > 1e-3,
          f"rel diff {rel(x[:8], x_tt[:8]):.3f}" if x is not None and x_tt is not None else "failed")


os.makedirs(WORK, exist_ok=True)
{"native": native, "layouts": layouts, "mixed": mixed}[WHAT]()
passed = sum(results)
print(f"{passed} passed, {len(results) - passed} failed")
sys.exit(0 if results and all(results) else 1)
