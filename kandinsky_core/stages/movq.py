"""MoVQ stages: ComfyUI IMAGE <-> raw MoVQ latents (no scaling factor, spec §4.4)."""
from __future__ import annotations

import logging

import torch

from ..components import MoVQModel
from ..runtime import Runtime
from .validation import check_pixels

logger = logging.getLogger(__name__)


def encode(movq: MoVQModel, image: torch.Tensor, *, runtime: Runtime) -> torch.Tensor:
    """IMAGE (B, H, W, 3) in [0, 1] -> latents (B, 4, H/f, W/f), float32 on the CPU.

    Sides that are not multiples of the MoVQ factor f are centre-cropped to the nearest multiple below
    (as ComfyUI's VAEEncode does), with a warning.
    """
    if image.ndim != 4 or image.shape[-1] < 3:
        raise ValueError(f"MoVQ encode expects an IMAGE (B, H, W, 3), got {tuple(image.shape)}.")
    check_pixels(image, "image")
    f = movq.scale_factor
    h, w = image.shape[1], image.shape[2]
    nh, nw = h // f * f, w // f * f
    if nh == 0 or nw == 0:
        raise ValueError(f"The image ({w}x{h}) is smaller than the MoVQ factor {f}.")
    if (nh, nw) != (h, w):
        logger.warning("Image %dx%d is not a multiple of %d: centre-cropped to %dx%d.", w, h, f, nw, nh)
        top, left = (h - nh) // 2, (w - nw) // 2
        image = image[:, top : top + nh, left : left + nw]
    runtime.load(movq.modules())
    device = runtime.device()
    x = image[..., :3].permute(0, 3, 1, 2).contiguous()  # B, H, W, 3 -> B, 3, H, W
    x = x.to(device=device, dtype=movq.dtype) * 2.0 - 1.0
    with torch.no_grad():
        return movq.movq.encode(x).float().cpu()


def decode(movq: MoVQModel, latents: torch.Tensor, *, runtime: Runtime) -> torch.Tensor:
    """Latents (B, 4, h, w) -> IMAGE (B, h*f, w*f, 3) in [0, 1], float32 on the CPU."""
    if latents.ndim != 4 or latents.shape[1] != 4:
        raise ValueError(f"MoVQ decode expects latents (B, 4, h, w), got {tuple(latents.shape)}.")
    runtime.load(movq.modules())
    device = runtime.device()
    with torch.no_grad():
        x = movq.movq.decode(latents.to(device=device, dtype=movq.dtype), force_not_quantize=True)
        x = (x.float() * 0.5 + 0.5).clamp(0, 1)
    return x.permute(0, 2, 3, 1).cpu()  # B, 3, H, W -> B, H, W, 3
