"""PyTorch reference for the optim module (tests/parity_optim.c).

    ref_optim.py OUT.safetensors

Runs 5 steps of torch.optim.SGD / AdamW and of solo-learn's LARS (the formula
in include/hallu/optim.h, implemented below in plain torch) on fixed
parameters and gradient sequences, plus the lr schedules
(CosineAnnealingLR, LinearLR + CosineAnnealingLR, MultiStepLR) and
clip_grad_norm_. The case table must match the one in tests/parity_optim.c."""
import math
import os
import sys

import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save_file  # noqa: E402

# name, shape, is bias/norm (excluded from decay/LARS when asked)
LAYOUT = [("w1", (6, 5), False), ("b1", (6,), True), ("bn", (6,), True), ("w2", (3, 6), False), ("z", (2, 2), False)]
# solo-learn excludes by p.ndim == 1; here exactly the bias/norm tensors are 1-D.
LRS = [0.1, 0.2, 0.15, 0.05, 0.01]
STEPS = len(LRS)

# name, kind, momentum, weight_decay, nesterov, exclude_bias_norm, lars_eta, lars_clip_lr
CASES = [
    ("sgd_plain", "sgd", 0.0, 5e-4, False, False, 0.0, False),
    ("sgd_momentum", "sgd", 0.9, 1e-4, False, False, 0.0, False),
    ("sgd_nesterov_excl", "sgd", 0.9, 5e-2, True, True, 0.0, False),
    ("adamw", "adamw", 0.0, 1e-2, False, False, 0.0, False),
    ("adamw_excl", "adamw", 0.0, 5e-2, False, True, 0.0, False),
    ("lars", "lars", 0.9, 1e-2, False, True, 0.02, False),
    ("lars_all_nesterov", "lars", 0.9, 1e-3, True, False, 0.001, False),
    ("lars_clip", "lars", 0.9, 1e-2, False, True, 0.02, True),
]


class Lars(torch.optim.Optimizer):
    """solo-learn's LARS step (see include/hallu/optim.h for the formula)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, eta=1e-3, eps=1e-8,
                 clip_lr=False, exclude_bias_n_norm=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                      eta=eta, eps=eps, clip_lr=clip_lr, exclude=exclude_bias_n_norm))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            wd, mom = group["weight_decay"], group["momentum"]
            for p in group["params"]:
                d_p = p.grad
                p_norm, g_norm = torch.norm(p), torch.norm(p.grad)
                if p.ndim != 1 or not group["exclude"]:
                    if p_norm != 0 and g_norm != 0:
                        trust = p_norm / (g_norm + p_norm * wd + group["eps"])
                        trust *= group["eta"]
                        if group["clip_lr"]:
                            trust = min(trust / group["lr"], 1)
                        d_p = d_p.add(p, alpha=wd)
                        d_p *= trust
                if mom != 0:
                    st = self.state[p]
                    if "momentum_buffer" not in st:
                        buf = st["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf = st["momentum_buffer"]
                        buf.mul_(mom).add_(d_p)
                    d_p = d_p.add(buf, alpha=mom) if group["nesterov"] else buf
                p.add_(d_p, alpha=-group["lr"])


def make_groups(params, wd, exclude):
    if not exclude:
        return [{"params": params, "weight_decay": wd}]
    decay = [p for p, (_, _, nd) in zip(params, LAYOUT) if not nd]
    no_decay = [p for p, (_, _, nd) in zip(params, LAYOUT) if nd]
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(case, params):
    _, kind, mom, wd, nesterov, exclude, eta, clip = case
    if kind == "sgd":
        return torch.optim.SGD(make_groups(params, wd, exclude), lr=LRS[0], momentum=mom, nesterov=nesterov,
                               foreach=False)
    if kind == "adamw":
        return torch.optim.AdamW(make_groups(params, wd, exclude), lr=LRS[0], foreach=False)
    # LARS excludes bias/norm itself (by ndim), with one group, as solo-learn.
    return Lars(params, lr=LRS[0], momentum=mom, weight_decay=wd, nesterov=nesterov, eta=eta, clip_lr=clip,
                exclude_bias_n_norm=exclude)


def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts])


def run_case(case, init, grads):
    params = [t.clone().requires_grad_(True) for t in init]
    opt = make_optimizer(case, params)
    history = []
    for step, lr in enumerate(LRS):
        for g in opt.param_groups:
            g["lr"] = lr
        for p, g in zip(params, grads[step]):
            p.grad = g.clone()
        opt.step()
        history.append(flat(params))
    keys = ["exp_avg", "exp_avg_sq"] if case[1] == "adamw" else (["momentum_buffer"] if case[2] != 0 else [])
    state = [flat([opt.state[p][k] for p in params]) for k in keys]
    return torch.stack(history), (torch.stack(state) if state else torch.zeros(0, history[0].numel()))


def schedule_values():
    out = {}
    p = [torch.zeros(1, requires_grad=True)]
    opt = torch.optim.SGD(p, lr=0.5)
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=0.001)
    vals = []
    for _ in range(21):
        vals.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    out["sched.cosine"] = torch.tensor(vals, dtype=torch.float64)

    opt = torch.optim.SGD(p, lr=0.5)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 5, end_factor=1.0, total_iters=4)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=15, eta_min=0.0)
    sch = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[5])
    vals = []
    for _ in range(20):
        vals.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    out["sched.cosine_warmup"] = torch.tensor(vals, dtype=torch.float64)

    opt = torch.optim.SGD(p, lr=10.0)
    sch = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 7, 12], gamma=0.1)
    vals = []
    for _ in range(16):
        vals.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    out["sched.multistep"] = torch.tensor(vals, dtype=torch.float64)
    return out


def clip_values(g):
    out = {}
    for name, max_norm in (("clip", 1.0), ("noclip", 1e3)):
        ps = [torch.zeros_like(t, requires_grad=True) for t in g]
        for p, t in zip(ps, g):
            p.grad = t.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        out[name + ".total"] = total.reshape(()).float()
        out[name + ".grad"] = flat([p.grad for p in ps])
    return out


def main():
    warnings.filterwarnings("ignore", message="The epoch parameter")
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    gen = torch.Generator().manual_seed(1234)
    init = [torch.randn(shape, generator=gen) * 0.5 if name != "z" else torch.zeros(shape)
            for name, shape, _ in LAYOUT]
    grads = [[torch.randn(shape, generator=gen) * (0.1 + 0.3 * s) for _, shape, _ in LAYOUT] for s in range(STEPS)]
    grads[2][1].zero_()   # a zero gradient norm (LARS leaves the range unadapted)
    out = {
        "layout.sizes": torch.tensor([math.prod(s) for _, s, _ in LAYOUT], dtype=torch.int64),
        "layout.no_decay": torch.tensor([int(nd) for _, _, nd in LAYOUT], dtype=torch.int64),
        "init": flat(init),
        "grads": torch.stack([flat(g) for g in grads]),
        "lrs": torch.tensor(LRS, dtype=torch.float64),
    }
    for case in CASES:
        hist, state = run_case(case, init, grads)
        out[case[0] + ".params"] = hist
        out[case[0] + ".state"] = state
    out.update(schedule_values())
    out.update(clip_values([g * 3 for g in grads[0]]))
    save_file(out, sys.argv[1], metadata={"torch": torch.__version__, "steps": str(STEPS)})
    print("wrote", sys.argv[1])


if __name__ == "__main__":
    main()
