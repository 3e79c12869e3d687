"""Kandinsky 3 sampling: text-to-image and image-to-image with the K3 UNet (spec §4.13, §4.14).

Reproduces Kandinsky3Pipeline / Kandinsky3Img2ImgPipeline given the same TextEmbeds, input latents and a CPU
generator seeded like the pipeline's. Guidance is K3's: eps = (g + 1) c - g u, off at g <= 1.
"""
from __future__ import annotations

import logging

import torch

from ..components import DecoderUNet
from ..payloads import TextEmbeds
from ..runtime import Runtime
from ..schedulers import make_scheduler, timesteps_for_strength
from ..schedulers.noise import randn
from . import decoder3_original, ksampling
from .conditioning import text_conditioning
from .scheduling import scheduler_config_for
from .sizes import crop_to, pad_to, padded_size
from .validation import check_guidance, check_runs_a_step, check_steps, check_strength

logger = logging.getLogger(__name__)

SAMPLERS = ["ddpm", "ddim", *ksampling.SAMPLERS]  # ksampling's run in stages/ksampling.py


def check_versions(unet: DecoderUNet, embeds: object) -> None:
    """K3 TextEmbeds go with a K3 UNet and 2.x Embeds with a 2.x UNet; a mix is an error naming both versions."""
    if (unet.version == "3") == isinstance(embeds, TextEmbeds):
        return
    version = getattr(embeds, "version", "?")
    source = "a Kandinsky 3 text encoder" if isinstance(embeds, TextEmbeds) else f"a Kandinsky {version} prior"
    use = ("KandinskyTextEncode with the text encoder of the same kandinsky-3 folder" if unet.version == "3"
           else f"embeds of a Kandinsky {unet.version} prior (KandinskyPriorEncode)")
    raise ValueError(
        f"These embeds come from {source} (Kandinsky {version}) but the UNet '{unet.name}' is Kandinsky "
        f"{unet.version}: use {use}."
    )


def _batch_latents(latents: torch.Tensor, embeds: TextEmbeds) -> torch.Tensor:
    if latents.ndim != 4 or latents.shape[1] != 4:
        raise ValueError(f"The latent must be (B, 4, h, w), got {tuple(latents.shape)}.")
    if embeds.batch > latents.shape[0]:
        if latents.shape[0] != 1:
            raise ValueError(
                f"The embeds hold {embeds.batch} prompts but the latent holds {latents.shape[0]} samples: use a "
                f"latent batch of 1 (repeated), {embeds.batch}, or any size >= {embeds.batch} (prompts reused "
                "cyclically)."
            )
        latents = latents.expand(embeds.batch, -1, -1, -1)
    return latents


def sample(unet: DecoderUNet, embeds: TextEmbeds, latents: torch.Tensor, *, generator: torch.Generator,
           steps: int = 25, guidance_scale: float = 3.0, sampler: str = "ddpm", denoise: float = 1.0,
           hint=None, mask: torch.Tensor | None = None, runtime: Runtime,
           masked_latents: torch.Tensor | None = None) -> torch.Tensor:
    """Denoise latents with the Kandinsky 3 UNet; returns (B, 4, h, w) float32 on the CPU.

    denoise 1.0 starts from pure noise (the latent only gives the size); d < 1 runs the last floor(steps x d)
    steps from the noised latent (diffusers' img2img `strength`).
    """
    check_versions(unet, embeds)
    if sampler in decoder3_original.SAMPLERS or unet.original_kind in ("flash", "inpainting"):
        if hint is not None:
            raise ValueError(f"A hint was given but the UNet '{unet.name}' is Kandinsky 3: disconnect the hint.")
        return decoder3_original.sample(unet, embeds, latents, generator=generator, steps=steps,
                                        guidance_scale=guidance_scale, sampler=sampler, denoise=denoise, mask=mask,
                                        masked_latents=masked_latents, runtime=runtime)
    check_steps(steps)
    check_guidance(guidance_scale)
    check_strength(denoise, "denoise")
    check_runs_a_step(steps, denoise, "denoise")
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler '{sampler}'. Choose one of {SAMPLERS}.")
    if hint is not None:
        raise ValueError(f"A hint was given but the UNet '{unet.name}' is Kandinsky 3, which takes no depth hint: "
                         "disconnect the hint.")
    if unet.variant.task != "text2img":
        raise ValueError(
            f"Inpainting is not available for the Kandinsky 3 UNet '{unet.name}' ({unet.variant.task}) here: encode "
            "the image without a mask."
        )
    if sampler in ksampling.SAMPLERS:  # a mask is masked img2img there (the plain K3 UNet has no mask channels)
        return ksampling.sample(unet, embeds, latents, generator=generator, steps=steps, guidance_scale=guidance_scale,
                                sampler=sampler, denoise=denoise, hint=None, mask=mask, runtime=runtime)
    if mask is not None:
        raise ValueError(
            f"Inpainting is not available for the Kandinsky 3 UNet '{unet.name}' with sampler '{sampler}': encode the "
            f"image without a mask, or pick one of {list(ksampling.SAMPLERS)} (they keep the unmasked area, as "
            "ComfyUI's masked image-to-image)."
        )
    latents = _batch_latents(latents, embeds)
    batch, _, h, w = latents.shape
    padded = padded_size(h, w, unet.latent_multiple)
    if padded != (h, w):
        logger.info("Latent %dx%d padded to %dx%d for the UNet, cropped back after sampling.", w, h, padded[1], padded[0])

    runtime.load(unet.modules())
    device, dtype = runtime.device(), unet.dtype
    cfg = guidance_scale > 1.0
    scheduler = make_scheduler(scheduler_config_for(unet, sampler))
    timesteps = scheduler.set_timesteps(steps)
    with torch.no_grad():
        cond = text_conditioning(unet, embeds, batch, cfg, device)  # [negative, positive] with guidance
        states, text_mask = cond.text_hidden_states, cond.text_mask
        noise = randn((batch, 4, *padded), generator, device, dtype)
        if denoise < 1.0:
            timesteps = timesteps_for_strength(timesteps, steps, denoise)
            init = pad_to(latents.to(device=device, dtype=dtype), padded)
            x = scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
        else:
            x = noise
        x = _loop(unet, scheduler, x, timesteps, states, text_mask, guidance_scale, generator, runtime)
    return crop_to(x, (h, w)).float().cpu()


def _loop(unet, scheduler, x, timesteps, states, text_mask, guidance_scale, generator, runtime):
    cfg = guidance_scale > 1.0
    steps = [int(t) for t in timesteps]
    steps_on_device = torch.tensor(steps, device=x.device)  # one copy up front: no host sync per step
    for i, t in enumerate(steps):
        model_in = torch.cat([x, x]) if cfg else x
        eps = unet.unet(model_in, steps_on_device[i], states, text_mask)
        if cfg:
            eps_u, eps_c = eps.chunk(2)
            eps = (guidance_scale + 1.0) * eps_c - guidance_scale * eps_u
        x = scheduler.step(eps, t, x, generator=generator)
        runtime.progress(i + 1, len(steps))
    return x
