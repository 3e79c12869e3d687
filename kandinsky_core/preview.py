"""Cheap latent previews: a linear latent -> RGB map fitted from a MoVQ's own decoder.

ComfyUI's "Latent2RGB" previews multiply each latent pixel (4 channels) by a 4x3 matrix and add a bias.
Stable Diffusion ships hand-fitted factors; MoVQ latents differ per repo, so the map is fitted once per
loaded MoVQ: encode a few smooth random colour images, decode the latents, average-pool the decoded
images to latent size, and solve the least-squares problem [latent, 1] @ W = RGB (RGB in -1..1, the
range ComfyUI's previewer expects).
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

FIT_IMAGES = 4  # synthetic images encoded and decoded for the fit
FIT_LATENT_SIDE = 8  # latent side of each (64 px with the real 8x MoVQ)
_cache: "weakref.WeakKeyDictionary[nn.Module, LatentRGB]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class LatentRGB:
    """ComfyUI's latent_rgb_factors (one [R, G, B] row per latent channel) and latent_rgb_factors_bias."""

    factors: tuple[tuple[float, float, float], ...]  # C rows of 3
    bias: tuple[float, float, float]

    def apply(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents -> (B, h, w, 3) preview in -1..1 (unclamped)."""
        w = torch.tensor(self.factors, dtype=torch.float32, device=latents.device)  # C, 3
        b = torch.tensor(self.bias, dtype=torch.float32, device=latents.device)
        return latents.float().movedim(1, -1) @ w + b  # B, C, h, w -> B, h, w, 3


def _fit_images(count: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random colour fields (B, 3, side, side) in -1..1: coarse noise upsampled bilinearly."""
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)


def fit_latent_rgb(movq: nn.Module, seed: int = 0) -> LatentRGB:
    """Fit the latent -> RGB map of a core MoVQ module (`encode` / `decode`), on its current device and dtype."""
    param = next(movq.parameters())
    f = int(movq.scale_factor)
    images = _fit_images(FIT_IMAGES, FIT_LATENT_SIDE * f, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        latents = movq.encode(images.to(param.device, param.dtype))
        decoded = movq.decode(latents, force_not_quantize=True).float().cpu()
    latents = latents.float().cpu()
    target = F.avg_pool2d(decoded, f)  # B, 3, h, w: the decoded colour under each latent pixel
    x = latents.movedim(1, -1).reshape(-1, latents.shape[1])  # B, C, h, w -> BHW, C
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)  # BHW, C + 1
    y = target.movedim(1, -1).reshape(-1, 3)  # B, 3, h, w -> BHW, 3
    solution = torch.linalg.lstsq(x.double(), y.double()).solution.float()  # C + 1, 3
    fit = LatentRGB(tuple(tuple(row) for row in solution[:-1].tolist()), tuple(solution[-1].tolist()))
    residual = (x @ solution - y).pow(2).mean().sqrt().item()
    logger.info("Fitted MoVQ latent preview factors (rms error %.3f on the fit images).", residual)
    return fit


def latent_rgb_for(movq: nn.Module) -> LatentRGB:
    """The fitted map of this MoVQ module, computed on first use and cached while the module lives."""
    fit = _cache.get(movq)
    if fit is None:
        fit = _cache[movq] = fit_latent_rgb(movq)
    return fit
