"""Masked img2img for UNets without inpainting channels, as ComfyUI's own samplers treat a LATENT's
`noise_mask` (comfy/samplers.py KSamplerX0Inpaint): before every UNet call the kept area (mask 0) is replaced
by the input latent noised to the current timestep with the run's noise, and the result keeps the input there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .sizes import pad_to


@dataclass(frozen=True)
class MaskedImg2Img:
    init: torch.Tensor  # B, 4, h, w: the input latents (padded to the UNet's size)
    noise: torch.Tensor  # B, 4, h, w: the run's initial noise
    repaint: torch.Tensor  # B, 1, h, w: the mask at latent size, 1 = repaint (ComfyUI's denoise_mask)

    def before_step(self, scheduler, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x with its kept area replaced by the input noised to timestep t (a 1-element tensor)."""
        kept = scheduler.add_noise(self.init, self.noise, t.expand(x.shape[0]))
        return x * self.repaint + kept * (1 - self.repaint)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.repaint + self.init * (1 - self.repaint)


def masked_img2img(init: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor, size: tuple[int, int],
                   padded: tuple[int, int]) -> MaskedImg2Img:
    """A ComfyUI MASK or noise_mask (B, [1,] H, W), 1 = repaint -> the blend for latents of `size` padded to
    `padded`; the mask is resized bilinearly to the latent, as ComfyUI's prepare_mask does."""
    m = mask.reshape(-1, 1, *mask.shape[-2:]).to(device=init.device, dtype=torch.float32)
    m = F.interpolate(m, size=size, mode="bilinear").clamp(0, 1)  # B, 1, h, w
    if m.shape[0] not in (1, init.shape[0]):
        raise ValueError(f"The mask batch ({m.shape[0]}) must be 1 or the latent batch ({init.shape[0]}).")
    m = pad_to(m.expand(init.shape[0], -1, -1, -1), padded).to(init.dtype)
    return MaskedImg2Img(init, noise, m)
