"""Seeded Gaussian noise with ComfyUI's convention: drawn in fp32 on the generator's device (the CPU)."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def randn(
    shape: Sequence[int],
    generator: torch.Generator | Sequence[torch.Generator] | None,
    device: torch.device | str,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Standard normal noise drawn in fp32 on the generator's device (CPU by default), then moved and cast.

    For fp32 with a CPU generator this equals diffusers' `randn_tensor` draw by draw. For fp16/bf16 it
    deliberately differs: diffusers draws directly in the low dtype, we draw fp32 and cast (ComfyUI's
    convention), so a seed gives the same noise in every dtype and on every device. A list of generators
    draws one batch-1 slice per generator (diffusers' convention). Without a generator the global CPU RNG
    is used.
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}; pass one per sample")
        parts = [torch.randn((1,) + shape[1:], generator=g, device=g.device, dtype=torch.float32) for g in generator]
        parts = [p.to(device=device) for p in parts]
        return torch.cat(parts, dim=0).to(dtype=dtype)
    rand_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(shape, generator=generator, device=rand_device, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)
