"""MoVQ stages: ComfyUI IMAGE <-> raw MoVQ latents (no scaling factor, spec §4.4)."""
from __future__ import annotations

import logging

import torch

from ..components import MoVQModel
from ..runtime import Runtime
from .tiles import OOM_TILE_PIXELS, whole_or_tiled
from .validation import check_pixels

logger = logging.getLogger(__name__)


def _tile_cells(tile_size: int, f: int) -> int:
    """A tile side in image pixels (0 = whole image) -> latent cells; checked."""
    if tile_size < 0 or 0 < tile_size < 4 * f:
        raise ValueError(f"tile_size must be 0 (whole image; tiles only when the device runs out of memory) or at "
                         f"least {4 * f} pixels, got {tile_size}.")
    return tile_size // f


def encode(movq: MoVQModel, image: torch.Tensor, *, runtime: Runtime, tile_size: int = 0) -> torch.Tensor:
    """IMAGE (B, H, W, 3) in [0, 1] -> latents (B, 4, H/f, W/f), float32 on the CPU.

    Sides that are not multiples of the MoVQ factor f are centre-cropped to the nearest multiple below
    (as ComfyUI's VAEEncode does), with a warning. tile_size > 0 encodes in overlapping tiles of that many
    pixels; 0 encodes the whole image, in tiles only when the device runs out of memory.
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
    tile = _tile_cells(tile_size, f) * f
    runtime.load(movq.modules())
    device = runtime.device()
    x = image[..., :3].permute(0, 3, 1, 2).contiguous()  # B, H, W, 3 -> B, 3, H, W

    def run(pixels: torch.Tensor) -> torch.Tensor:
        return movq.movq.encode(pixels.to(device=device, dtype=movq.dtype) * 2.0 - 1.0)

    blocks = [*movq.movq.encoder.down_blocks, movq.movq.encoder.mid_block]
    with torch.no_grad():
        return whole_or_tiled(run, x, tile=tile, oom_tile=OOM_TILE_PIXELS, scale=1 / f, blocks=blocks,
                              runtime=runtime, what="MoVQ encode")


def decode(movq: MoVQModel, latents: torch.Tensor, *, runtime: Runtime, tile_size: int = 0) -> torch.Tensor:
    """Latents (B, 4, h, w) -> IMAGE (B, h*f, w*f, 3) in [0, 1], float32 on the CPU.

    tile_size > 0 decodes in overlapping tiles of that many output pixels; 0 decodes the whole latent, in
    tiles only when the device runs out of memory."""
    if latents.ndim != 4 or latents.shape[1] != 4:
        raise ValueError(f"MoVQ decode expects latents (B, 4, h, w), got {tuple(latents.shape)}.")
    f = movq.scale_factor
    tile = _tile_cells(tile_size, f)
    runtime.load(movq.modules())
    device = runtime.device()

    def run(z: torch.Tensor) -> torch.Tensor:
        return movq.movq.decode(z.to(device=device, dtype=movq.dtype), force_not_quantize=True)

    blocks = [movq.movq.decoder.mid_block, *movq.movq.decoder.up_blocks]
    with torch.no_grad():
        x = whole_or_tiled(run, latents, tile=tile, oom_tile=OOM_TILE_PIXELS // f, scale=f, blocks=blocks,
                           runtime=runtime, what="MoVQ decode")
        x = (x * 0.5 + 0.5).clamp(0, 1)
    return x.permute(0, 2, 3, 1)  # B, 3, H, W -> B, H, W, 3
