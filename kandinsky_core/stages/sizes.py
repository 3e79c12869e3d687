"""Size rules: the UNet needs latent sides divisible by 2^(levels-1); we pad and crop back instead of
changing the requested size (diffusers instead rounds the image size up to a multiple of 64)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Replicate-pad a B, C, h, w tensor on the bottom/right up to `size`."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (0, dw, 0, dh), mode="replicate")


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x[..., : size[0], : size[1]]


def diffusers_latent_size(height: int, width: int, scale_factor: int) -> tuple[int, int]:
    """diffusers' downscale_height_and_width: round the pixel size up to scale^2, then divide by scale."""
    def side(n: int) -> int:
        return -(-n // scale_factor**2) * scale_factor
    return side(height), side(width)
