#!/usr/bin/env python3
"""SimCLR + Hallucinator training step on one GPU: hallu (--device cuda) against
PyTorch on the same GPU, in one invocation (run by scripts/gpu-check.sh; not a
pass/fail test).

Models (both SimCLR + Hallucinator, residual wiring, r ~ U(0, 0.1); SGD momentum
0.9, weight decay 5e-4):
  rn18  ResNet-18, CIFAR stem (3x3/1 conv, no max-pool), 32x32, batch 512
  rn50  ResNet-50, ImageNet stem (7x7/2 conv + max-pool), 224x224, batch 256
The step: both views (2B images) in one encoder pass, projection head
Linear(f,f)-ReLU-Linear(f,128), the Hallucinator on the view-1 projections,
NT-Xent (T 0.5) over the 4B rows, backward, SGD. The PyTorch model is the
project's own: tools/ssl_cifar_torch.py's Method and Hallucinator (the peer of
`hallu train` in docs/RESULTS.md) and tools/ref_ssl.py's projector, imported,
not rewritten; for rn50 its encoder is torchvision's resnet50 (fc removed) and
the head's width 2048. Inputs are one fixed random batch already on the GPU on
both sides (no loader): this times the device's work.

PyTorch configurations: fp32 (TF32 off), TF32 (matmul + cuDNN), bf16 autocast
(encoder and head; the Hallucinator and loss stay fp32, as hallu's bf16), each
NCHW and channels_last, eager; torch.compile (default mode) of the loss function
for bf16 channels_last (--compile all: every configuration), a failure printed
as "failed: reason". hallu: bench/bench_gpu_step (the same step through the
public API) with --precision fp32, bf16, and fp32 with HALLU_CUDA_TF32=1.

Timing: warm-up steps, then the median of N steps, each bracketed by CUDA
events (PyTorch) or ended by a one-float download (hallu; both wait for the
GPU). images/s = B / median step (B source images, two views each). FLOPs per
step are counted once per model by torch.utils.flop_counter on one fp32 step
(convolutions and matrix products, forward and backward); % peak is against
the bf16 dense matrix rate measured in this run (8192^3 bf16 matmul, random
data, median of 10 after 3 warm-ups), which no configuration should exceed.

Without a GPU: prints "no GPU: skipped", shows hallu's answer to --device cuda
(a named error, not a crash) and exits 0.

usage: bench/gpu_step.py [--hallu-bench build-gpu/bench/bench_gpu_step]
         [--models rn18,rn50] [--steps N] [--warmup N] [--compile best|all|none]
         [--budget-s 300] [--json FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

MODELS = {
    # name: (arch, stem, batch, size, steps, warmup)
    "rn18": ("resnet18", "cifar", 512, 32, 20, 5),
    "rn50": ("resnet50", "imagenet", 256, 224, 10, 3),
}
PRECISIONS = ("fp32", "tf32", "bf16")
LAYOUTS = ("nchw", "channels_last")


def log(msg):
    print(msg, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hallu-bench", default=os.path.join(ROOT, "build-gpu", "bench", "bench_gpu_step"))
    p.add_argument("--models", default="rn18,rn50")
    p.add_argument("--steps", type=int, default=0, help="timed steps (0: 20 for rn18, 10 for rn50)")
    p.add_argument("--warmup", type=int, default=-1, help="warm-up steps (-1: 5 for rn18, 3 for rn50)")
    p.add_argument("--compile", default="best", choices=["best", "all", "none"])
    p.add_argument("--budget-s", type=float, default=300.0,
                   help="start no further configuration after this many seconds (the device call has a limit)")
    p.add_argument("--hallu-timeout-s", type=float, default=90.0, help="per hallu run")
    p.add_argument("--json", default="", help="write every result here")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="check this script's PyTorch side on the CPU at tiny sizes (no GPU needed; numbers meaningless)")
    return p.parse_args(argv)


DEV = "cuda"


class Timer:
    """CUDA events on the GPU; the host clock after the step on the CPU (--cpu-smoke)."""

    def __init__(self, torch):
        self.torch, self.pairs = torch, []

    def start(self):
        if DEV == "cuda":
            s, e = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            s.record()
            self.pairs.append((s, e))
        else:
            self.pairs.append([time.perf_counter(), None])

    def stop(self):
        if DEV == "cuda":
            self.pairs[-1][1].record()
        else:
            self.pairs[-1][1] = time.perf_counter()

    def ms(self):
        sync(self.torch)
        if DEV == "cuda":
            return [s.elapsed_time(e) for s, e in self.pairs]
        return [(e - s) * 1e3 for s, e in self.pairs]


def sync(torch):
    if DEV == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- hallu

def hallu_run(a, model, precision, tf32=False, batch=None, steps=None, warmup=None):
    arch, stem, b, size, n, w = MODELS[model]
    cmd = [a.hallu_bench, "--device", DEV, "--precision", precision, "--arch", arch, "--stem", stem,
           "--batch", str(batch or b), "--size", str(size), "--steps", str(steps or a.steps or n),
           "--warmup", str(warmup if warmup is not None else (a.warmup if a.warmup >= 0 else w))]
    if not os.path.exists(a.hallu_bench):
        return {"error": "%s does not exist (build with the bench targets)" % a.hallu_bench}
    env = dict(os.environ)
    env.pop("HALLU_CUDA_TF32", None)
    if tf32:
        env["HALLU_CUDA_TF32"] = "1"
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                           timeout=a.hallu_timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %.0f s" % a.hallu_timeout_s}
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        tail = p.stdout.strip().splitlines()[-3:]
        return {"error": "exit %d, no result: %s" % (p.returncode, " | ".join(tail) or "(no output)")}
    r = json.loads(lines[-1])
    r["exit"] = p.returncode
    return r


# ---------------------------------------------------------------- PyTorch

def build_model(torch, model, amp):
    import torch.nn as nn
    import torchvision
    import ssl_cifar_torch as sct   # the project's PyTorch peer: Method, Hallucinator
    from ref_ssl import projector
    args = sct.parse_args(["--data", "-", "--method", "simclr", "--hallucinator", "--hal-init", "residual",
                           "--amp", "bf16" if amp else "none"])
    m = sct.Method(args)
    if model == "rn50":
        enc = torchvision.models.resnet50()
        enc.fc = nn.Identity()
        m.encoder = enc
        m.projector = projector("simclr", feat=2048)
    return m


def set_tf32(torch, on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def count_flops(torch, model):
    """Convolution and matrix-product FLOPs of one fp32 training step (forward + backward)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError as e:
        return None, "torch.utils.flop_counter unavailable: %s" % e
    arch, stem, b, size, _, _ = MODELS[model]
    torch.manual_seed(0)
    m = build_model(torch, model, amp=False).to(DEV)
    v1 = torch.randn(b, 3, size, size, device=DEV)
    v2 = torch.randn(b, 3, size, size, device=DEV)
    set_tf32(torch, True)   # counting only
    try:
        with FlopCounterMode(display=False) as fc:
            loss, _ = m.loss(v1, v2)
            loss.backward()
        total = fc.get_total_flops()
    except Exception as e:  # noqa: BLE001 - report, do not stop the benchmark
        return None, "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
    finally:
        del m, v1, v2
        empty_cache(torch)
    return float(total), None


def torch_run(torch, a, model, precision, layout, compiled):
    arch, stem, b, size, n, w = MODELS[model]
    steps, warmup = a.steps or n, (a.warmup if a.warmup >= 0 else w)
    cl = layout == "channels_last"
    torch.manual_seed(0)
    set_tf32(torch, precision == "tf32")
    m = build_model(torch, model, amp=precision == "bf16").to(DEV)
    fmt = torch.channels_last if cl else torch.contiguous_format
    m = m.to(memory_format=fmt)
    opt = torch.optim.SGD(m.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    v1 = torch.randn(b, 3, size, size, device=DEV).contiguous(memory_format=fmt)
    v2 = torch.randn(b, 3, size, size, device=DEV).contiguous(memory_format=fmt)

    def loss_fn(x1, x2):
        return m.loss(x1, x2)[0]

    fn = loss_fn

    def step():
        opt.zero_grad(set_to_none=True)
        loss = fn(v1, v2)
        loss.backward()
        opt.step()
        return loss

    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        if compiled:
            fn = torch.compile(loss_fn)
        for _ in range(max(warmup, 1 if compiled else 0)):
            step()
        sync(torch)
        warm_s = time.perf_counter() - t0
        timer = Timer(torch)
        for _ in range(steps):
            timer.start()
            loss = step()
            timer.stop()
        ms = timer.ms()
        lv = float(loss)
    except Exception as e:  # noqa: BLE001 - torch.compile failures are reported, not fatal
        msg = str(e).strip().splitlines()
        return {"error": "failed: %s: %s" % (type(e).__name__, msg[0][:200] if msg else "")}
    finally:
        peak = torch.cuda.max_memory_allocated() / 2**20 if DEV == "cuda" else 0.0
        del m, opt, v1, v2
        if compiled and hasattr(torch, "_dynamo"):
            torch._dynamo.reset()
        empty_cache(torch)
    med = statistics.median(ms) / 1e3
    return {"median_step_s": med, "min_step_s": min(ms) / 1e3, "images_per_s": b / med, "loss": lv,
            "device_mib_peak": peak, "warmup_s": warm_s, "steps": steps, "warmup": warmup}


def empty_cache(torch):
    if DEV == "cuda":
        torch.cuda.empty_cache()


def matmul_tflops(torch, dtype, tf32=False, n=8192):
    set_tf32(torch, tf32)
    g = torch.Generator(device=DEV).manual_seed(0)
    x = torch.randn(n, n, device=DEV, dtype=dtype, generator=g)
    y = torch.randn(n, n, device=DEV, dtype=dtype, generator=g)
    for _ in range(3):
        x @ y
    sync(torch)
    ms = []
    for _ in range(10):
        timer = Timer(torch)
        timer.start()
        x @ y
        timer.stop()
        ms.append(timer.ms()[0])
    del x, y
    empty_cache(torch)
    return 2.0 * n ** 3 / (statistics.median(ms) / 1e3) / 1e12


# ---------------------------------------------------------------- main

def no_gpu(a, torch, why):
    log("no GPU: skipped (%s)" % why)
    r = hallu_run(a, "rn18", "fp32", batch=4, steps=1, warmup=0)
    if "error" in r:
        log("hallu --device cuda: %s (exit %s)" % (r["error"], r.get("exit", "?")))
    else:
        log("hallu --device cuda ran without a GPU visible to PyTorch: %s" % json.dumps(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"skipped": "no GPU: " + why, "hallu_cuda": r}, f, indent=1)
    return 0


def fmt_row(name, r, flops, peak):
    if r is None:
        return "  %-34s %s" % (name, "not run")
    if "error" in r:
        return "  %-34s %s" % (name, r["error"])
    ips = r["images_per_s"]
    s = "  %-34s %9.1f images/s  %8.2f ms/step" % (name, ips, r["median_step_s"] * 1e3)
    if flops and peak:
        tf = flops / r["median_step_s"] / 1e12
        s += "  %6.1f TFLOP/s  %5.1f%% of bf16 peak" % (tf, 100.0 * tf / peak)
    if "device_mib_peak" in r:
        s += "  %7.0f MiB" % r["device_mib_peak"]
    if "input_s" in r:   # the trainer's input path for one batch (bytes up, normalised on the device)
        s += "  input %.2f ms (%.1f%% of a step)" % (r["input_s"] * 1e3, 100.0 * r["input_s"] / r["median_step_s"])
    return s


def ratio(x, y):
    if not x or not y or "error" in x or "error" in y:
        return "n/a"
    return "%.2fx" % (x["images_per_s"] / y["images_per_s"])


def main(argv):
    a = parse_args(argv)
    t_start = time.time()
    try:
        import torch
    except ImportError as e:
        return no_gpu(a, None, "PyTorch is not importable: %s" % e)
    global DEV
    if a.cpu_smoke:
        DEV = "cpu"
        MODELS["rn18"] = ("resnet18", "cifar", 8, 32, 2, 1)
        MODELS["rn50"] = ("resnet50", "imagenet", 2, 64, 2, 1)
        info = {"gpu": "cpu (--cpu-smoke)", "torch": torch.__version__}
        mm = 256
    elif not torch.cuda.is_available():
        return no_gpu(a, torch, "torch %s sees no CUDA device" % torch.__version__)
    else:
        torch.backends.cudnn.benchmark = True
        props = torch.cuda.get_device_properties(0)
        info = {"gpu": torch.cuda.get_device_name(0), "sms": props.multi_processor_count,
                "memory_gib": round(props.total_memory / 2**30, 1), "torch": torch.__version__,
                "torch_cuda": torch.version.cuda, "torch_cudnn": torch.backends.cudnn.version()}
        try:
            info["torch_nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception:  # noqa: BLE001
            info["torch_nccl"] = "n/a"
        mm = 8192
    log("gpu_step.py: %s" % json.dumps(info))
    peaks = {"bf16": matmul_tflops(torch, torch.bfloat16, n=mm), "tf32": matmul_tflops(torch, torch.float32, True, mm),
             "fp32": matmul_tflops(torch, torch.float32, False, mm)}
    log("measured matmul peaks (8192^3, TFLOP/s): bf16 %.0f, tf32 %.0f, fp32 %.1f" %
        (peaks["bf16"], peaks["tf32"], peaks["fp32"]))
    results = {"info": info, "peaks_tflops": peaks, "models": {}}
    models = [m for m in a.models.split(",") if m]
    # hallu first: it is what this check is for, and it must not lose to the time budget.
    for model in models:
        res = results["models"].setdefault(model, {"hallu": {}, "torch": {}})
        for name, prec, tf32 in (("fp32", "fp32", False), ("bf16", "bf16", False), ("tf32", "fp32", True)):
            if time.time() - t_start > a.budget_s:
                res["hallu"][name] = {"error": "not run: --budget-s %.0f spent" % a.budget_s}
                continue
            r = hallu_run(a, model, prec, tf32=tf32)
            res["hallu"][name] = r
            log("hallu %s %s: %s" % (model, name, json.dumps(r)))
    for model in models:
        res = results["models"][model]
        flops, why = count_flops(torch, model)
        res["flops_per_step"] = flops
        log("%s: %s FLOPs per step%s" % (model, "%.4g" % flops if flops else "n/a", " (%s)" % why if why else ""))
        configs = [(p, l, False) for p in PRECISIONS for l in LAYOUTS]
        if a.compile == "all":
            configs += [(p, l, True) for p in PRECISIONS for l in LAYOUTS]
        elif a.compile == "best":
            configs.append(("bf16", "channels_last", True))
        for prec, layout, comp in configs:
            key = "%s %s%s" % (prec, layout, " compile" if comp else "")
            if time.time() - t_start > a.budget_s:
                res["torch"][key] = {"error": "not run: --budget-s %.0f spent" % a.budget_s}
                continue
            r = torch_run(torch, a, model, prec, layout, comp)
            res["torch"][key] = r
            log("torch %s %s: %s" % (model, key, json.dumps(r)))

    lines = []
    for model in models:
        arch, stem, b, size, _, _ = MODELS[model]
        res = results["models"][model]
        flops = res.get("flops_per_step")
        lines.append("%s: SimCLR + Hallucinator, %s %s stem, %dx%d, batch %d (x2 views)%s" % (
            model, arch, stem, size, size, b, ", %.3g GFLOP/step" % (flops / 1e9) if flops else ""))
        for name in ("fp32", "tf32", "bf16"):
            lines.append(fmt_row("hallu %s" % name, res["hallu"].get(name), flops, peaks["bf16"]))
        for key, r in res["torch"].items():
            lines.append(fmt_row("torch %s" % key, r, flops, peaks["bf16"]))
        t = res["torch"]
        h = res["hallu"]
        best32 = max((t.get("fp32 " + l) for l in LAYOUTS if t.get("fp32 " + l) and "error" not in t["fp32 " + l]),
                     key=lambda r: r["images_per_s"], default=None)
        best_tf = max((t.get("tf32 " + l) for l in LAYOUTS if t.get("tf32 " + l) and "error" not in t["tf32 " + l]),
                      key=lambda r: r["images_per_s"], default=None)
        lines.append("  ratios: hallu bf16 / torch eager bf16 channels_last = %s; hallu bf16 / torch.compile bf16 "
                     "channels_last = %s; hallu fp32 / torch best fp32 = %s; hallu tf32 / torch best tf32 = %s" % (
                         ratio(h.get("bf16"), t.get("bf16 channels_last")),
                         ratio(h.get("bf16"), t.get("bf16 channels_last compile")),
                         ratio(h.get("fp32"), best32), ratio(h.get("tf32"), best_tf)))
    table = "\n".join(lines)
    results["table"] = table
    results["seconds"] = round(time.time() - t_start, 1)
    log("")
    log("BENCHMARK (%s; bf16 peak measured here %.0f TFLOP/s; %.0f s)" % (info["gpu"], peaks["bf16"],
                                                                         results["seconds"]))
    log(table)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
