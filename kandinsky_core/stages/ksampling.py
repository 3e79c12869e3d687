"""Decoder sampling with the k-diffusion-style samplers (euler, heun, DPM-Solver++, ...).

Each sampler name is a (sampler, σ schedule) pair; the schedule is the one diffusers' scheduler of the same
algorithm computes from the repo's own scheduler config (so a run equals that scheduler, step for step).
Text-to-image starts from noise x init_noise_sigma; denoise d < 1 (img2img) walks the last floor(N·d)
steps from the clean latents noised to their first σ; 2.2 inpainting re-imposes the known region at every
model call; 2.1 inpainting only feeds the mask channels (as the diffusers pipelines of each version do); a
mask with a UNet without inpainting channels re-imposes the kept area like 2.2 inpainting (ComfyUI's masked
img2img).
"""
from __future__ import annotations

import logging
from typing import Callable, NamedTuple

import torch

from ..components import DecoderUNet
from ..payloads import Embeds, Hint, TextEmbeds
from ..runtime import Runtime
from ..schedulers import kdiffusion
from ..schedulers.noise import randn
from ..schedulers.sigmas import SigmaSchedule, discrete_schedule, dpm_solver_schedule, sigmas_for, truncate
from . import conditioning
from .denoiser import InpaintBlend, KandinskyDenoiser
from .masked_img2img import masked_img2img
from .sizes import crop_to, pad_to, padded_size

logger = logging.getLogger(__name__)


class KSampler(NamedTuple):
    sampler: Callable[..., torch.Tensor]  # one of schedulers.kdiffusion's samplers
    schedule: Callable[..., SigmaSchedule]  # (config, steps, karras) -> σ grid
    karras: bool  # Karras ρ = 7 σ spacing
    vp: bool = False  # the sampler walks x / √(σ² + 1) (kdiffusion's *_vp samplers), as diffusers' DPM-Solver


# name (KandinskyUNetSampler's `sampler` choice) -> sampler and schedule, matching diffusers' scheduler:
SAMPLERS: dict[str, KSampler] = {
    "euler": KSampler(kdiffusion.euler, discrete_schedule, False),  # EulerDiscreteScheduler
    "euler_ancestral": KSampler(kdiffusion.euler_ancestral, discrete_schedule, False),  # EulerAncestralDiscrete
    "heun": KSampler(kdiffusion.heun, discrete_schedule, False),  # HeunDiscreteScheduler
    "dpmpp_2m": KSampler(kdiffusion.dpmpp_2m_vp, dpm_solver_schedule, False, vp=True),  # DPMSolverMultistep
    "dpmpp_2m_karras": KSampler(kdiffusion.dpmpp_2m_vp, dpm_solver_schedule, True, vp=True),  # use_karras_sigmas
    "dpmpp_2m_sde_karras": KSampler(kdiffusion.dpmpp_2m_sde_vp, dpm_solver_schedule, True, vp=True),  # sde-dpmsolver++
}


def schedule_for(unet: DecoderUNet, sampler: str, steps: int) -> SigmaSchedule:
    """The σ grid `sampler` walks in `steps` steps, from the repo's own scheduler/ config."""
    entry = SAMPLERS[sampler]
    return entry.schedule(unet.scheduler_configs["scheduler"], steps, karras=entry.karras)


def sample(unet: DecoderUNet, embeds: Embeds | TextEmbeds, latents: torch.Tensor, *, generator: torch.Generator,
           steps: int, guidance_scale: float, sampler: str, denoise: float, hint: Hint | None, mask: torch.Tensor | None,
           runtime: Runtime) -> torch.Tensor:
    """decoder.sample for the samplers in SAMPLERS (inputs already checked there); (B, 4, h, w) fp32 CPU."""
    from .decoder import _batch_latents, _inpaint_inputs, hint_input  # decoder dispatches here

    latents = _batch_latents(latents, embeds)
    batch, _, h, w = latents.shape
    padded = padded_size(h, w, unet.latent_multiple)
    schedule = schedule_for(unet, sampler, steps)
    if denoise < 1.0:
        schedule = truncate(schedule, denoise)
    runtime.load(unet.modules())
    device, dtype = runtime.device(), unet.dtype
    cfg = guidance_scale > 1.0

    with torch.no_grad():
        cond = conditioning.conditioning_for(unet, embeds, batch, cfg, device)  # 2.x embeds or K3 text
        noise = randn((batch, 4, *padded), generator, device, torch.float32)
        init = pad_to(latents.to(device=device, dtype=torch.float32), padded)
        inpaint = blend = None
        if mask is not None and unet.variant.task != "inpaint":  # masked img2img, as ComfyUI treats noise_mask
            repaint = masked_img2img(init, noise, mask.to(device), (h, w), padded).repaint
            blend = InpaintBlend(init, 1 - repaint, noise)
        elif mask is not None:
            inpaint = _inpaint_inputs(init, mask.to(device), padded, cfg)
            if unet.version == "2.2":
                blend = InpaintBlend(inpaint.image_latents, inpaint.keep, noise)
        denoiser = KandinskyDenoiser(
            unet, cond, guidance_scale, sigmas_for(unet.scheduler_configs["scheduler"]),
            extra=inpaint.extra.to(dtype) if inpaint is not None else None,
            hint=hint_input(hint, (h, w), padded, batch, cfg, device, dtype) if hint is not None else None,
            blend=blend, timestep_of=schedule.timestep_at,
        )
        sigmas, entry = schedule.sigmas, SAMPLERS[sampler]
        x = _start(entry.vp, schedule, init, noise, denoise)

        def report(i: int, denoised: torch.Tensor) -> None:
            runtime.preview(crop_to(denoised, (h, w)))
            runtime.progress(i + 1, schedule.steps)

        x = entry.sampler(denoiser.vp if entry.vp else denoiser, x, sigmas, generator, report)
        if blend is not None:
            x = blend.clean(x)
    return crop_to(x, (h, w)).float().cpu()


def _start(vp: bool, schedule: SigmaSchedule, init: torch.Tensor, noise: torch.Tensor, denoise: float) -> torch.Tensor:
    """The sampler's starting x: pure noise (text-to-image), or the clean latents noised to the first σ; for a
    `vp` sampler in x / √(σ² + 1), whose pure-noise start is the noise itself (as diffusers' DPM-Solver)."""
    sigma = schedule.sigmas[0]
    if vp:
        alpha, sigma_vp = kdiffusion.vp_coefficients(sigma)
        return noise if denoise >= 1.0 else alpha * init + sigma_vp * noise
    return noise * schedule.init_noise_sigma if denoise >= 1.0 else init + noise * sigma
