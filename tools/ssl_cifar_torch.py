#!/usr/bin/env python3
"""The PyTorch peer of `hallu train` for the CIFAR-10 table (docs/RESULTS.md).

An independent PyTorch implementation of the same recipe hallu runs: ResNet-18
with the CIFAR stem (torchvision), the method's head, the Hallucinator
(reference or residual wiring, r ~ U(0, max) drawn once per forward, as hallu),
METHOD.md's two views (view 1 ContrastiveCrop with the fixed centre box, view 2
RandomResizedCrop; flip, colour jitter p 0.8, grayscale p 0.2, CIFAR
normalisation), SGD with momentum and weight decay on every tensor, cosine decay
per step to 0 with no warm-up, shuffled batches with the last partial batch
dropped, the evenly spaced training subset (image floor(j * n / N)), and the kNN
monitor (k 200, T 0.1, cosine, weighted vote) on the encoder's 512-d features of
the subset against the full test split, before training (the floor) and after.

Runs on the CPU (Debian's torch 1.13) or a GPU (--device cuda; TF32 is turned
off so the arithmetic stays float32). Prints one JSON line per run.

--checkpoint FILE makes a long CPU run resumable: the model, optimizer, MoCo queue
pointer, RNG states, step and floor are saved there (atomically) every
--checkpoint-every steps, and a later call with the same FILE and recipe continues
from the last save. Each epoch's shuffle is a permutation drawn from (seed, epoch),
so a resumed run sees the same batches; the augmentation draws after a resume differ
from an uninterrupted run's (the loader's workers are new), which a peer run can
afford.

usage: ssl_cifar_torch.py --data DIR [--method simclr] [--hallucinator] ...
  DIR: an ImageFolder tree with train/ and test/ (the unpacked cifar10-jpeg.tar.gz)
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openblas_kernels  # noqa: E402

openblas_kernels.use_fast_kernels()   # before numpy and torch load OpenBLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from PIL import Image

from ref_ssl import projector  # noqa: E402  (the heads, shared with the parity reference)

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
TEMPERATURE = {"simclr": 0.5, "mocov1": 0.07, "mocov2": 0.2}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="ImageFolder root with train/ and test/")
    p.add_argument("--amp", default="none", choices=["none", "bf16"],
                   help="bf16: the encoder and heads under torch.autocast(bfloat16) (hallu's --precision bf16 peer)")
    p.add_argument("--channels-last", action="store_true", help="the model and views in channels_last")
    p.add_argument("--time-steps", type=int, default=0,
                   help="N > 0: only time N training steps (no kNN) and print the median images/s of steps 2..N")
    p.add_argument("--method", default="simclr", choices=["simclr", "mocov1", "mocov2", "simsiam"])
    p.add_argument("--hallucinator", action="store_true")
    p.add_argument("--hal-init", default="residual", choices=["reference", "residual"])
    p.add_argument("--hal-ratio-max", type=float, default=0.1)
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--test-subset", type=int, default=0, help="0 = the full test split")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.06)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--base-temperature", type=float, default=0.0,
                   help="SimCLR: scale the loss by T / base (the authors' NT_Xent_dist: 0.07); 0 = plain")
    p.add_argument("--fix-pred-lr", action="store_true",
                   help="SimSiam: the predictor keeps the base lr (no cosine decay), as hallu's --fix-pred-lr")
    p.add_argument("--zero-init-residual", action="store_true", help="last BN of each block starts at weight 0")
    p.add_argument("--queue-size", type=int, default=4096)
    p.add_argument("--moco-momentum", type=float, default=0.99)
    p.add_argument("--bn-splits", type=int, default=1,
                   help="MoCo Shuffle BN on one process: BN per group of consecutive images, keys shuffled")
    p.add_argument("--crop", default="ccrop", choices=["ccrop", "rrc"],
                   help="ccrop: view 1 ContrastiveCrop (METHOD.md); rrc: RandomResizedCrop on both views "
                        "(standard SimCLR; hallu train --crop rrc)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="SimCLR / MoCo softmax temperature (0 = the method's default: 0.5 / 0.07 / 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-knn-floor", action="store_true")
    p.add_argument("--tag", default="", help="copied into the JSON line")
    p.add_argument("--checkpoint", default="", help="save/resume the run here (see above)")
    p.add_argument("--checkpoint-every", type=int, default=20, help="steps between saves")
    return p.parse_args(argv)


# ---------------------------------------------------------------- data

def list_images(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    items = []
    for c, name in enumerate(classes):
        folder = os.path.join(root, name)
        items += [(os.path.join(folder, f), c) for f in sorted(os.listdir(folder))]
    return items


def load_split(root, subset):
    items = list_images(root)
    if 0 < subset < len(items):
        items = [items[j * len(items) // subset] for j in range(subset)]
    images = np.stack([np.asarray(Image.open(path).convert("RGB")) for path, _ in items])
    return images, np.array([c for _, c in items], dtype=np.int64)


class ContrastiveCrop:
    """RandomResizedCrop's size draw; the crop's start drawn Beta(a, a) inside the
    range that keeps its centre within the fixed box (METHOD.md, hallu's ccrop)."""

    def __init__(self, size, scale=(0.2, 1.0), box=(0.25, 0.75), alpha=0.1):
        self.size, self.scale, self.box, self.alpha = size, scale, box, alpha
        self.ratio = (3.0 / 4.0, 4.0 / 3.0)

    def offset(self, n, length):
        c0 = min(max(int(math.floor(n * self.box[0])) - length // 2, 0), n - length)
        c1 = min(max(int(math.floor(n * self.box[1])) - length // 2, 0), n - length)
        return c0 + int(math.floor((c1 - c0) * np.random.beta(self.alpha, self.alpha)))

    def __call__(self, img):
        w_img, h_img = img.size
        top, left, h, w = T.RandomResizedCrop.get_params(img, self.scale, self.ratio)
        if not (h == h_img and w == w_img and top == 0 and left == 0):
            top, left = self.offset(h_img, h), self.offset(w_img, w)
        return T.functional.resized_crop(img, top, left, h, w, [self.size, self.size])


def view_transform(size, ccrop):
    crop = ContrastiveCrop(size) if ccrop else T.RandomResizedCrop(size, scale=(0.2, 1.0))
    return T.Compose([crop, T.RandomHorizontalFlip(), T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                      T.RandomGrayscale(p=0.2), T.ToTensor(), T.Normalize(MEAN, STD)])


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images, ccrop=True):
        size = images.shape[1]
        self.images, self.t1, self.t2 = images, view_transform(size, ccrop), view_transform(size, False)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i])
        return self.t1(img), self.t2(img)


def seed_worker(worker_id):
    s = torch.initial_seed() % 2**32
    np.random.seed(s)


# ---------------------------------------------------------------- model

class GroupedBatchNorm2d(nn.BatchNorm2d):
    """Training-mode statistics per group of consecutive images (one process standing
    in for `groups` data-parallel devices); the running statistics move by the mean of
    the groups' updates."""

    def __init__(self, channels, groups):
        super().__init__(channels)
        self.groups = groups

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        outs, means, variances = [], [], []
        for chunk in x.chunk(self.groups):
            rm, rv = self.running_mean.clone(), self.running_var.clone()
            outs.append(F.batch_norm(chunk, rm, rv, self.weight, self.bias, True, self.momentum, self.eps))
            means.append(rm)
            variances.append(rv)
        with torch.no_grad():
            self.running_mean.copy_(torch.stack(means).mean(0))
            self.running_var.copy_(torch.stack(variances).mean(0))
            self.num_batches_tracked += 1
        return torch.cat(outs)


def resnet18_cifar(zero_init_residual=False, bn_splits=1):
    norm = (lambda c: GroupedBatchNorm2d(c, bn_splits)) if bn_splits > 1 else None
    net = torchvision.models.resnet18(zero_init_residual=zero_init_residual, norm_layer=norm)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


class Hallucinator(nn.Module):
    """h = MLP([x, g]) (reference) or g + MLP([x, g]) with a zero last layer
    (residual), g = (1 + r) x - r k; returns concat_rows(x, h)."""

    def __init__(self, dim, residual, ratio_max):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, 2 * dim), nn.ReLU(),
                                 nn.Linear(2 * dim, dim))
        self.residual, self.ratio_max = residual, ratio_max
        if residual:
            nn.init.zeros_(self.mlp[4].weight)
            nn.init.zeros_(self.mlp[4].bias)

    def forward(self, x, k):
        r = float(torch.empty(()).uniform_(0.0, self.ratio_max))
        g = (1 + r) * x - r * k
        h = self.mlp(torch.cat([x, g], dim=1))
        return torch.cat([x, g + h if self.residual else h], dim=0)


class Method(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.method = a.method
        self.amp = a.amp == "bf16"
        dim = 512 if a.method == "simsiam" else 128
        self.bn_splits = a.bn_splits if a.method.startswith("moco") else 1
        self.encoder = resnet18_cifar(a.zero_init_residual, self.bn_splits)
        self.temperature = a.temperature if a.temperature > 0 else TEMPERATURE.get(a.method, 0.5)
        self.loss_scale = self.temperature / a.base_temperature if a.base_temperature > 0 else 1.0
        self.projector = projector(a.method)
        if a.method == "simsiam":
            self.predictor = nn.Sequential(nn.Linear(dim, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
                                           nn.Linear(128, dim))
        self.hal = Hallucinator(dim, a.hal_init == "residual", a.hal_ratio_max) if a.hallucinator else None
        if a.method.startswith("moco"):
            self.key_encoder = resnet18_cifar(a.zero_init_residual, self.bn_splits)
            self.key_projector = projector(a.method)
            self.key_encoder.load_state_dict(self.encoder.state_dict())
            self.key_projector.load_state_dict(self.projector.state_dict())
            for p in list(self.key_encoder.parameters()) + list(self.key_projector.parameters()):
                p.requires_grad = False
            self.register_buffer("queue", F.normalize(torch.randn(a.queue_size, dim), dim=1))
            self.ptr, self.m, self.t = 0, a.moco_momentum, self.temperature

    def embed(self, x):
        if self.amp:   # autocast's bf16 ops; the Hallucinator and the loss stay float32
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.projector(self.encoder(x)).float()
        return self.projector(self.encoder(x))

    def loss(self, v1, v2):
        if self.method == "simclr":
            return self.simclr(v1, v2)
        if self.method == "simsiam":
            return self.simsiam(v1, v2)
        return self.moco(v1, v2)

    def simclr(self, v1, v2):
        n = v1.shape[0]
        z = self.embed(torch.cat([v1, v2]))
        a, b = z[:n], z[n:]
        z1 = a
        if self.hal is not None:
            a, b = self.hal(a, b), torch.cat([b, b])
        f = F.normalize(torch.cat([a, b]), dim=1)
        m = f.shape[0]
        logits = (f @ f.T / self.temperature).masked_fill(torch.eye(m, dtype=torch.bool, device=f.device),
                                                              float("-inf"))
        pos = (torch.arange(m, device=f.device) + m // 2) % m
        return self.loss_scale * F.cross_entropy(logits, pos), z1

    def simsiam(self, v1, v2):
        z1, z2 = self.embed(v1), self.embed(v2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = z1.detach(), z2.detach()
        if self.hal is not None:
            p1, p2 = self.hal(p1, p2), self.hal(p2, p1)
            t1, t2 = torch.cat([t1, t1]), torch.cat([t2, t2])
        loss = -0.5 * (F.cosine_similarity(p1, t2, dim=1).mean() + F.cosine_similarity(p2, t1, dim=1).mean())
        return loss, z1

    @torch.no_grad()
    def momentum_update(self):
        q = list(self.encoder.parameters()) + list(self.projector.parameters())
        k = list(self.key_encoder.parameters()) + list(self.key_projector.parameters())
        for pq, pk in zip(q, k):
            pk.mul_(self.m).add_(pq.detach(), alpha=1.0 - self.m)

    def moco(self, v1, v2):
        q = self.embed(v1)
        with torch.no_grad():
            self.momentum_update()
            if self.bn_splits > 1:   # Shuffle BN: the key's BN group holds other images than its query's
                order = torch.randperm(v2.shape[0], device=v2.device)
                k = F.normalize(self.key_projector(self.key_encoder(v2[order])), dim=1)[torch.argsort(order)]
            else:
                k = F.normalize(self.key_projector(self.key_encoder(v2)), dim=1)
        z, kpos = q, k
        if self.hal is not None:
            q, kpos = self.hal(q, k), torch.cat([k, k])
        q = F.normalize(q, dim=1)
        logits = torch.cat([(q * kpos).sum(1, keepdim=True), q @ self.queue.clone().T], dim=1) / self.t
        loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        with torch.no_grad():
            n, K = k.shape[0], self.queue.shape[0]
            idx = (torch.arange(n, device=k.device) + self.ptr) % K
            self.queue[idx] = k
            self.ptr = (self.ptr + n) % K
        return loss, z


def collapse_std(z):
    return F.normalize(z.detach(), dim=1).std(dim=0).mean().item()


# ---------------------------------------------------------------- kNN

@torch.no_grad()
def features(encoder, images, device, batch=500):
    encoder.eval()
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(device).permute(0, 3, 1, 2).float() / 255.0
        out.append(F.normalize(encoder((x - mean) / std), dim=1))
    encoder.train()
    return torch.cat(out)


@torch.no_grad()
def knn_top1(encoder, train, test, device, k=200, t=0.1, classes=10):
    bank, queries = features(encoder, train[0], device), features(encoder, test[0], device)
    bank_labels = torch.from_numpy(train[1]).to(device)
    test_labels = torch.from_numpy(test[1]).to(device)
    hits = 0
    for i in range(0, len(queries), 1000):
        sims, idx = (queries[i:i + 1000] @ bank.T).topk(min(k, len(bank)), dim=1)
        votes = torch.zeros(sims.shape[0], classes, device=device)
        votes.scatter_add_(1, bank_labels[idx], (sims / t).exp())
        hits += (votes.argmax(1) == test_labels[i:i + 1000]).sum().item()
    return 100.0 * hits / len(queries)


# ---------------------------------------------------------------- training

RECIPE_IGNORES = ("device", "threads", "workers", "tag", "checkpoint", "checkpoint_every", "no_knn_floor")


def recipe(a):
    return {k: v for k, v in sorted(vars(a).items()) if k not in RECIPE_IGNORES}


def save_checkpoint(a, model, opt, step, loss, std, floor):
    state = {"recipe": recipe(a), "model": model.state_dict(), "ptr": getattr(model, "ptr", 0),
             "opt": opt.state_dict(), "step": step, "loss": loss, "std": std, "floor": floor,
             "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    tmp = a.checkpoint + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, a.checkpoint)


def load_checkpoint(a):
    if not a.checkpoint or not os.path.exists(a.checkpoint):
        return None
    state = torch.load(a.checkpoint, map_location="cpu")
    if state.get("recipe") != recipe(a):
        sys.exit(f"ssl_cifar_torch.py: {a.checkpoint} holds another recipe: {state.get('recipe')}")
    return state


def epoch_batches(a, n, epoch, skip):
    """Epoch `epoch`'s shuffled full batches, from batch `skip` on."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(a.seed * 1_000_003 + epoch)).tolist()
    return [perm[i:i + a.batch_size] for i in range(0, n - a.batch_size + 1, a.batch_size)][skip:]


step_seconds = []   # wall time of each training step (forward, backward, update), for --time-steps


def train(a, model, train_images, device, log, resumed, floor):
    data = TwoViews(train_images, a.crop == "ccrop")
    fixed = set(map(id, model.predictor.parameters())) if a.fix_pred_lr and a.method == "simsiam" else set()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in fixed], "fixed_lr": False},
              {"params": [p for p in params if id(p) in fixed], "fixed_lr": True}]
    opt = torch.optim.SGD([g for g in groups if g["params"]], lr=a.lr, momentum=a.momentum,
                          weight_decay=a.weight_decay)
    per_epoch = len(data) // a.batch_size
    step_seconds.clear()
    total, step, loss, std = a.epochs * per_epoch, 0, float("nan"), float("nan")
    if resumed is not None:
        opt.load_state_dict(resumed["opt"])
        step, loss, std = resumed["step"], resumed["loss"], resumed["std"]
        torch.set_rng_state(resumed["torch_rng"])   # after the model's init drew its weights
        np.random.set_state(resumed["numpy_rng"])
        if resumed["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resumed["cuda_rng"])
        log(f"resumed at step {step}/{total}")
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        loader = torch.utils.data.DataLoader(data, batch_sampler=epoch_batches(a, len(data), epoch, skip),
                                             num_workers=a.workers, worker_init_fn=seed_worker,
                                             pin_memory=device.type == "cuda")
        for v1, v2 in loader:
            if a.channels_last:
                v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
            t_step = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = a.lr if group["fixed_lr"] else a.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
            out, z = model.loss(v1, v2)
            opt.zero_grad(set_to_none=True)
            out.backward()
            opt.step()
            step_seconds.append(time.perf_counter() - t_step)
            step += 1
            if a.time_steps and step >= a.time_steps:
                return loss, std
            if step % 10 == 0 or step == total:
                loss, std = out.item(), collapse_std(z)
                log(f"epoch {epoch + 1} step {step}/{total} loss {loss:.4f} collapse_std {std:.4f}")
            if a.checkpoint and (step % a.checkpoint_every == 0 or step == total):
                save_checkpoint(a, model, opt, step, loss, std, floor)
    return loss, std


def main(argv):
    a = parse_args(argv)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True

    def log(msg):
        print(f"[{a.tag or a.method}] {msg}", file=sys.stderr, flush=True)

    t0 = time.time()
    if a.time_steps:   # the step's speed only: the data, model and steps, no kNN
        model = Method(a).to(device)
        if a.channels_last:
            model = model.to(memory_format=torch.channels_last)
        train(a, model, load_split(os.path.join(a.data, "train"), a.train_subset)[0], device, log, None, None)
        times = sorted(step_seconds[1:])
        print(json.dumps({"method": a.method, "hallucinator": a.hallucinator, "amp": a.amp,
                          "channels_last": a.channels_last, "batch": a.batch_size, "steps": len(step_seconds),
                          "images_per_s": a.batch_size / times[len(times) // 2]}), flush=True)
        return
    train_set = load_split(os.path.join(a.data, "train"), a.train_subset)
    test_set = load_split(os.path.join(a.data, "test"), a.test_subset)
    resumed = load_checkpoint(a)
    model = Method(a)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        if a.method.startswith("moco"):
            model.ptr = resumed["ptr"]
    model = model.to(device)
    if resumed is not None:
        floor = resumed["floor"]
    else:
        floor = None if a.no_knn_floor else knn_top1(model.encoder, train_set, test_set, device)
    if floor is not None:
        log(f"untrained kNN top-1 {floor:.2f}%")
    loss, std = train(a, model, train_set[0], device, log, resumed, floor)
    top1 = knn_top1(model.encoder, train_set, test_set, device)
    log(f"kNN top-1 {top1:.2f}%")
    print(json.dumps({"tag": a.tag, "method": a.method, "hallucinator": a.hallucinator, "hal_init": a.hal_init,
                      "subset": a.train_subset, "epochs": a.epochs, "batch": a.batch_size, "lr": a.lr,
                      "queue": a.queue_size, "moco_m": a.moco_momentum, "bn_splits": a.bn_splits, "fix_pred_lr": a.fix_pred_lr,
                      "zero_init_residual": a.zero_init_residual, "crop": a.crop,
                      "temperature": model.temperature, "seed": a.seed, "knn_floor": floor,
                      "knn_top1": top1, "final_loss": loss, "collapse_std": std, "device": str(device),
                      "torch": torch.__version__, "seconds": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
