"""Measure the decoder UNet's peak activation memory per latent pixel (the bridge MODEL's memory estimate).

Method: build the full-size UNet (fp32, CPU, zero weights: values do not change memory), run one warm-up
forward, then for two latent sizes reset the process's peak RSS (/proc/self/clear_refs, "5"), run a
forward of batch 2 (cond + uncond, as KSampler batches them) under no_grad, and read VmHWM - the RSS
before the call. Large activations are mmap'ed by glibc and returned on free, so the peak RSS above the
baseline is the peak of live activations. The slope between the two sizes, per sample and latent pixel,
is ACTIVATION_BYTES_PER_LATENT_PIXEL in nodes/bridge.py (the intercept, allocator and oneDNN scratch, is
printed too). Linux only.

    python benchmarks/measure_unet_memory.py --version 2.2 --sides 32 48
    MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/measure_unet_memory.py --version 3 --sides 16 32

Kandinsky 3 (3.06 B parameters, ~12.2 GB of fp32 weights) is fed T5 states of K3_TOKENS tokens with a mask
that attends to the first half (a realistic prompt padded to the longest one in the batch).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kandinsky_core.configs.unet import K21_DECODER, K22_DECODER  # noqa: E402
from kandinsky_core.configs.unet3 import K3_UNET  # noqa: E402
from kandinsky_core.models.unet import KandinskyUNet  # noqa: E402
from kandinsky_core.models.unet3 import Kandinsky3UNet  # noqa: E402

BATCH = 2
K3_TOKENS = 128


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _inputs(version: str, side: int) -> dict:
    x = torch.randn(BATCH, 4, side, side)
    if version == "3":
        mask = torch.arange(K3_TOKENS)[None].expand(BATCH, -1) < K3_TOKENS // 2  # B, L
        return dict(sample=x, timestep=torch.tensor(500),
                    encoder_hidden_states=torch.randn(BATCH, K3_TOKENS, K3_UNET.encoder_hid_dim),
                    encoder_attention_mask=mask)
    if version == "2.2":
        return dict(sample=x, timestep=torch.tensor(500), image_embeds=torch.randn(BATCH, 1280))
    return dict(sample=x, timestep=torch.tensor(500), image_embeds=torch.randn(BATCH, 768),
                text_embeds=torch.randn(BATCH, 768), text_hidden_states=torch.randn(BATCH, 77, 1024))


def peak_bytes(unet: torch.nn.Module, version: str, side: int) -> int:
    inputs = _inputs(version, side)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = _status("VmRSS")
    with torch.no_grad():
        out = unet(**inputs)
    peak = _status("VmHWM") - before
    del out
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", choices=["2.1", "2.2", "3"], default="2.2")
    parser.add_argument("--sides", type=int, nargs=2, default=[32, 48])
    args = parser.parse_args()
    with torch.device("meta"):  # no weights allocated until to_empty
        if args.version == "3":
            unet = Kandinsky3UNet(K3_UNET)
        else:
            unet = KandinskyUNet(K22_DECODER if args.version == "2.2" else K21_DECODER)
    unet = unet.to_empty(device="cpu").eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.zero_()
    peak_bytes(unet, args.version, 16)  # warm-up: allocator, oneDNN primitives
    small, large = args.sides
    peaks = {side: peak_bytes(unet, args.version, side) for side in (small, large)}
    slope = (peaks[large] - peaks[small]) / (BATCH * (large * large - small * small))
    intercept = peaks[small] - slope * BATCH * small * small
    tokens = {"tokens": K3_TOKENS} if args.version == "3" else {}
    print(json.dumps({"version": args.version, **tokens, "peak_bytes": peaks,
                      "bytes_per_sample_latent_pixel": round(slope), "intercept_bytes": round(intercept)}))


if __name__ == "__main__":
    main()
