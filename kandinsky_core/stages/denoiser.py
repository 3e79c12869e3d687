"""Discrete-ε denoiser around the Kandinsky UNets, for the k-diffusion-style samplers.

D(x, σ) = x - σ·ε̂(x / √(σ² + 1), t(σ)): the UNet was trained on x_t = √ᾱ_t·x₀ + √(1-ᾱ_t)·ε,
which is x_σ / √(σ² + 1) for σ = √((1-ᾱ_t)/ᾱ_t). `KandinskyDenoiser.vp` takes that scaled latent
itself (the variable of the `*_vp` samplers and of diffusers' DPM-Solver) and feeds it to the UNet as is. Guidance, the inpaint UNets' extra channels, the depth
hint, 2.1's text states and the learned-variance split live here, not in the samplers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..components import DecoderUNet
from ..schedulers.kdiffusion import vp_coefficients
from ..schedulers.sigmas import timestep_for
from .conditioning import DecoderConditioning


def _guided_2x(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Kandinsky 2.x: u + g·(c - u)."""
    return uncond + scale * (cond - uncond)


def _guided_3(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Kandinsky 3 (diffusers' K3 pipeline): (g + 1)·c - g·u."""
    return (scale + 1.0) * cond - scale * uncond


# version -> how the conditional and unconditional ε combine (guidance is on for scale > 1)
GUIDANCE: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "2.1": _guided_2x,
    "2.2": _guided_2x,
    "3": _guided_3,
}


def unet_eps(unet: DecoderUNet, x_in: torch.Tensor, timestep: torch.Tensor | float, cond: DecoderConditioning,
             extra: torch.Tensor | None = None, hint: torch.Tensor | None = None) -> torch.Tensor:
    """ε̂ of one UNet call (B, 4, h, w): no guidance, no input scaling. `x_in` (B, 4, h, w) is the already
    scaled latent, `extra` (B, 5, h, w) the inpaint UNets' [masked image latents, keep mask], `hint` the depth
    hint (B, 3, 8h, 8w); `cond` rows match the batch (Kandinsky 3: its text states and mask). A
    learned-variance output's second half is dropped."""
    model_in = torch.cat([x_in, extra], dim=1) if extra is not None else x_in  # B, 4 (+5), h, w
    if unet.version == "3":  # masked T5 states; no image embeds, no hint
        return unet.unet(model_in, timestep, cond.text_hidden_states, cond.text_mask)[:, : x_in.shape[1]]
    out = unet.unet(model_in, timestep, cond.image_embeds, hint=hint, text_embeds=cond.text_embeds,
                    text_hidden_states=cond.text_hidden_states)
    return out[:, : x_in.shape[1]]


@dataclass(frozen=True)
class InpaintBlend:
    """2.2 inpainting: the known region is re-imposed at every call (noised to σ on input, clean on output)."""

    image_latents: torch.Tensor  # B, 4, h, w: clean latents of the image
    keep: torch.Tensor  # B, 1, h, w: 1 = keep
    noise: torch.Tensor  # B, 4, h, w: the run's initial noise

    def noised(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.keep * (self.image_latents + self.noise * sigma) + (1 - self.keep) * x

    def noised_vp(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """`noised` in the scaled variable x / √(σ² + 1) (diffusers' DPM-Solver add_noise)."""
        alpha, sigma_vp = vp_coefficients(sigma)
        return self.keep * (alpha * self.image_latents + sigma_vp * self.noise) + (1 - self.keep) * x

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        return self.keep * self.image_latents + (1 - self.keep) * x


class KandinskyDenoiser:
    """`denoiser(x, σ) -> x₀` for the samplers in schedulers.kdiffusion: x and x₀ in fp32, the UNet in its dtype.

    `cond` is [uncond, cond]-doubled when guidance is on (guidance_scale > 1), as are `extra` and `hint`.
    `timestep_of(σ)` maps σ to the model timestep; by default the nearest training timestep (the rounded
    log-σ interpolation, as ComfyUI and diffusers' DPM-Solver do).
    """

    def __init__(self, unet: DecoderUNet, cond: DecoderConditioning, guidance_scale: float, sigma_table: torch.Tensor,
                 *, extra: torch.Tensor | None = None, hint: torch.Tensor | None = None,
                 blend: InpaintBlend | None = None, timestep_of: Callable[[torch.Tensor], float] | None = None):
        self.unet = unet
        self.cond = cond
        self.guidance_scale = float(guidance_scale)
        self.guided = GUIDANCE[unet.version]
        self.sigma_table = sigma_table
        self.extra, self.hint, self.blend = extra, hint, blend
        self._timestep_of = timestep_of

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1.0

    def timestep(self, sigma: torch.Tensor) -> float:
        if self._timestep_of is not None:
            return self._timestep_of(sigma)
        return float(timestep_for(sigma, self.sigma_table).round())

    def eps(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Guided ε̂ at (x, σ), in x's dtype."""
        return self._eps_of_input(x / (sigma**2 + 1) ** 0.5, sigma)

    def _eps_of_input(self, x_in: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Guided ε̂ of the UNet input x / √(σ² + 1), in the input's dtype."""
        dtype = x_in.dtype
        x_in = x_in.to(self.unet.dtype)
        if self.cfg:
            x_in = torch.cat([x_in, x_in])  # [uncond, cond] rows
        eps = unet_eps(self.unet, x_in, self.timestep(sigma), self.cond, self.extra, self.hint).to(dtype)
        if self.cfg:
            uncond, cond = eps.chunk(2)
            eps = self.guided(uncond, cond, self.guidance_scale)
        return eps

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.blend is not None:
            x = self.blend.noised(x, sigma)
        denoised = x - sigma * self.eps(x, sigma)
        return self.blend.clean(denoised) if self.blend is not None else denoised

    def vp(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x₀ from the scaled latent x / √(σ² + 1) (the `*_vp` samplers' denoiser), as diffusers' DPM-Solver
        converts ε̂: (x - σ_vp·ε̂) / α."""
        if self.blend is not None:
            x = self.blend.noised_vp(x, sigma)
        alpha, sigma_vp = vp_coefficients(sigma)
        denoised = (x - sigma_vp * self._eps_of_input(x, sigma)) / alpha
        return self.blend.clean(denoised) if self.blend is not None else denoised
