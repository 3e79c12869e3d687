"""Depth hints for the 2.2 depth ControlNet UNet."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..payloads import Hint


def depth_hint(image: torch.Tensor) -> Hint:
    """Any depth image -> Hint (B, 3, H, W) in [0, 1].

    Accepts a ComfyUI IMAGE (B, H, W, C) with C = 1 or 3 (or more: the first 3 are used), a MASK-like
    (B, H, W) map, or a single (H, W) map. Values already in [0, 1] are kept as they are (what the
    diffusers examples feed: depth / 255); any other range is min-max normalised per image.
    """
    x = image.float()
    if x.ndim == 2:
        x = x[None, :, :, None]
    elif x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"A depth image must be (B, H, W, C), (B, H, W) or (H, W), got {tuple(image.shape)}.")
    channels = x.shape[-1]
    if channels == 1:
        x = x.expand(-1, -1, -1, 3)
    elif channels >= 3:
        x = x[..., :3]
    else:
        raise ValueError(f"A depth image must have 1 or 3 channels, got {channels}.")
    x = x.permute(0, 3, 1, 2).contiguous()  # B, H, W, 3 -> B, 3, H, W
    if not torch.isfinite(x).all():
        raise ValueError("The depth image contains NaN or infinite values.")
    if x.min() < 0 or x.max() > 1:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
    return Hint(x)


def hint_for_latent(hint: Hint, image_size: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """Resize the hint to the latent's image size, then replicate-pad it to the padded image size."""
    x = hint.image
    if tuple(x.shape[-2:]) != image_size:
        x = F.interpolate(x, size=image_size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    dh, dw = padded[0] - image_size[0], padded[1] - image_size[1]
    if dh or dw:
        x = F.pad(x, (0, dw, 0, dh), mode="replicate")
    return x
