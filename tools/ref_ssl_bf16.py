#!/usr/bin/env python3
"""PyTorch bf16 autocast references for hallu's --precision bf16 (issue 28).

For SimCLR, MoCo v2 and SimSiam with the Hallucinator, the configuration,
seed, weights and views of tools/ref_ssl.py's fp32 reference
(ref_ssl_<name>.safetensors in OUT_DIR, written first by ref_ssl.py), one
training step with the encoder and heads under torch.autocast("cpu",
bfloat16) -- convolutions and linear layers in bf16, BN, the Hallucinator
and the loss in float32, as autocast keeps them -- written to
ref_ssl_bf16_<name>.safetensors with the same names (init.*, view1, view2,
queue, loss, grad.*), so parity_ssl --bf16 reads it as it reads the fp32 file.
usage: ref_ssl_bf16.py OUT_DIR
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_ssl  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402

NAMES = ("simclr_hal", "mocov2_hal", "simsiam_hal")


def autocast_wrap(fn):
    def run(*args):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(*args)
        return out.float()
    return run


def bf16_reference(cfg, seed):
    torch.manual_seed(seed)
    method, hal, residual, mask, enqdup = cfg
    model = ref_ssl.Model(method, hal, residual)
    ref_ssl.randomize_bn(model)
    model.train()
    v1, v2 = torch.randn(ref_ssl.N, 3, ref_ssl.SIZE, ref_ssl.SIZE), torch.randn(ref_ssl.N, 3, ref_ssl.SIZE, ref_ssl.SIZE)
    moco = ref_ssl.MoCoState(model, seed, v2) if method.startswith("moco") else None
    out = {"init." + k: v.clone() for k, v in model.state_dict().items()}
    if moco:
        out["queue"] = moco.queue.clone()
        moco.encoder.forward = autocast_wrap(moco.encoder.forward)
        moco.projector.forward = autocast_wrap(moco.projector.forward)
    out["view1"] = v1.permute(0, 2, 3, 1).contiguous()
    out["view2"] = v2.permute(0, 2, 3, 1).contiguous()
    model.embed = autocast_wrap(model.embed)
    if method == "simsiam":
        model.predictor.forward = autocast_wrap(model.predictor.forward)
    loss = ref_ssl.step_loss(model, cfg, v1, v2, moco)
    loss.backward()
    out["loss"] = loss.detach().reshape(1)
    for k, p in model.named_parameters():
        out["grad." + k] = p.grad.detach().clone()
    out["losses"] = torch.tensor([loss.item()] * ref_ssl.STEPS)
    return out


def main():
    out_dir = sys.argv[1]
    torch.set_num_threads(1)
    for name in NAMES:
        _, meta = load_file(os.path.join(out_dir, f"ref_ssl_{name}.safetensors"), with_metadata=True)
        out = bf16_reference(ref_ssl.CONFIGS[name], int(meta["seed"]))
        meta = dict(meta, precision="bf16")
        save_file({k: v.to(torch.float32).contiguous() for k, v in out.items()},
                  os.path.join(out_dir, f"ref_ssl_bf16_{name}.safetensors"), metadata=meta)
        print(f"wrote bf16 {name}: seed {meta['seed']}, loss {out['loss'].item():.6f}")


if __name__ == "__main__":
    main()
