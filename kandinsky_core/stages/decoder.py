"""Decoder sampling: text-to-image, image-to-image, inpainting and depth hint for the 2.x UNets.

Reproduces KandinskyV22{,Img2Img,Inpaint,Controlnet,ControlnetImg2Img}Pipeline (and the 2.1 pipelines,
spec §4.6-4.11) given the same embeddings, input latents and a CPU generator seeded like the pipeline's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..components import DecoderUNet
from ..payloads import Embeds, Hint
from ..runtime import Runtime
from ..schedulers import make_scheduler, timesteps_for_strength
from ..schedulers.noise import randn
from . import conditioning, ksampling
from .hints import hint_for_latent
from .masks import latent_keep_mask
from .scheduling import scheduler_config_for
from .sizes import crop_to, pad_to, padded_size
from .validation import check_guidance, check_runs_a_step, check_steps, check_strength

logger = logging.getLogger(__name__)

SAMPLERS = ["ddpm", "ddim", *ksampling.SAMPLERS]  # new names only ever appended (saved workflows store them)


@dataclass(frozen=True)
class _Inpaint:
    """Extra UNet input channels for inpainting, already doubled for guidance."""

    image_latents: torch.Tensor  # B, 4, h, w: the clean image latents (for the 2.2 re-blend)
    keep: torch.Tensor  # B, 1, h, w: eroded keep-mask (1 = keep)
    extra: torch.Tensor  # B or 2B, 5, h, w: [masked image latents, keep] fed after the noisy latents


def _batch_latents(latents: torch.Tensor, embeds: Embeds) -> torch.Tensor:
    if latents.ndim != 4 or latents.shape[1] != 4:
        raise ValueError(f"The latent must be (B, 4, h, w), got {tuple(latents.shape)}.")
    if embeds.batch > latents.shape[0]:
        if latents.shape[0] != 1:
            raise ValueError(
                f"The embeds hold {embeds.batch} samples but the latent holds {latents.shape[0]}: use a latent "
                f"batch of 1 (repeated), {embeds.batch}, or any size >= {embeds.batch} (embeds reused cyclically)."
            )
        latents = latents.expand(embeds.batch, -1, -1, -1)
    return latents


def _check_inputs(unet: DecoderUNet, embeds: Embeds, hint: Hint | None, mask: torch.Tensor | None) -> None:
    variant = unet.variant
    if embeds.version != variant.version or embeds.width != variant.image_embed_dim:
        raise ValueError(
            f"These embeds come from a Kandinsky {embeds.version} prior (width {embeds.width}) but the UNet "
            f"'{unet.name}' is Kandinsky {variant.version} (expects width {variant.image_embed_dim}): use the "
            f"prior of the same version as the decoder."
        )
    if variant.task == "depth" and hint is None:
        raise ValueError(f"The UNet '{unet.name}' is a depth ControlNet: connect a KANDINSKY_HINT (KandinskyDepthHint).")
    if variant.task != "depth" and hint is not None:
        raise ValueError(
            f"A hint was given but the UNet '{unet.name}' is not a depth ControlNet: load "
            "kandinsky-2-2-controlnet-depth, or disconnect the hint."
        )
    if variant.task == "inpaint" and mask is None:
        raise ValueError(
            f"The UNet '{unet.name}' is an inpainting model: give it a latent with a mask "
            "(KandinskyMoVQEncode with its mask input)."
        )
    if variant.task != "inpaint" and mask is not None:
        raise ValueError(
            f"The latent carries an inpainting mask but the UNet '{unet.name}' is not an inpainting model: load "
            "an inpaint decoder (e.g. kandinsky-2-2-decoder-inpaint), or encode the image without a mask."
        )


def _inpaint_inputs(image_latents, mask, padded, cfg) -> _Inpaint:
    keep = latent_keep_mask(mask, tuple(image_latents.shape[-2:])).to(image_latents)
    if keep.shape[0] not in (1, image_latents.shape[0]):
        raise ValueError(f"The mask batch ({keep.shape[0]}) must be 1 or the latent batch ({image_latents.shape[0]}).")
    keep = keep.expand(image_latents.shape[0], -1, -1, -1)
    image_latents, keep = pad_to(image_latents, padded), pad_to(keep, padded)
    extra = torch.cat([image_latents * keep, keep], dim=1)
    if cfg:
        extra = torch.cat([extra, extra])
    return _Inpaint(image_latents, keep, extra)


def sample(unet: DecoderUNet, embeds: Embeds, latents: torch.Tensor, *, generator: torch.Generator,
           steps: int = 50, guidance_scale: float = 4.0, sampler: str = "ddpm", denoise: float = 1.0,
           hint: Hint | None = None, mask: torch.Tensor | None = None, runtime: Runtime) -> torch.Tensor:
    """Denoise latents with the decoder UNet and return the result (B, 4, h, w) float32 on the CPU.

    denoise 1.0 starts from pure noise (text-to-image; the latent only gives the size), denoise d < 1 runs the
    last floor(steps x d) steps from the noised latent (diffusers' img2img `strength`). `mask` (ComfyUI MASK,
    1 = repaint) turns on inpainting; the latent then holds the MoVQ latents of the image to inpaint.
    """
    check_steps(steps)
    check_guidance(guidance_scale)
    check_strength(denoise, "denoise")
    check_runs_a_step(steps, denoise, "denoise")
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler '{sampler}'. Choose one of {SAMPLERS}.")
    _check_inputs(unet, embeds, hint, mask)
    if sampler in ksampling.SAMPLERS:
        return ksampling.sample(unet, embeds, latents, generator=generator, steps=steps, guidance_scale=guidance_scale,
                                sampler=sampler, denoise=denoise, hint=hint, mask=mask, runtime=runtime)
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
        cond = conditioning.decoder_conditioning(unet, embeds, batch, cfg, device)
        noise = randn((batch, 4, *padded), generator, device, dtype)
        init = pad_to(latents.to(device=device, dtype=dtype), padded)
        inpaint = _inpaint_inputs(init, mask.to(device), padded, cfg) if mask is not None else None
        if denoise < 1.0:
            timesteps = timesteps_for_strength(timesteps, steps, denoise)
            x = conditioning.noise_init_latents(unet, scheduler, init, noise, timesteps, denoise)
        else:
            x = noise
        hint_in = hint_input(hint, (h, w), padded, batch, cfg, device, dtype) if hint is not None else None
        x = _loop(unet, scheduler, x, noise, timesteps, cond, guidance_scale, inpaint, hint_in, generator, runtime)
    return crop_to(x, (h, w)).float().cpu()


def hint_input(hint: Hint, size: tuple[int, int], padded: tuple[int, int], batch: int, cfg: bool,
               device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The UNet's hint input for a latent of `size` padded to `padded`: one row per sample, doubled with cfg."""
    f = 8  # the hint encoder downsamples 8x
    hint_in = hint_for_latent(hint, (size[0] * f, size[1] * f), (padded[0] * f, padded[1] * f)).to(device, dtype)
    hint_in = hint_in[torch.arange(batch) % hint_in.shape[0]]
    return torch.cat([hint_in, hint_in]) if cfg else hint_in


def _loop(unet, scheduler, x, noise, timesteps, cond, guidance_scale, inpaint, hint, generator, runtime):
    cfg = guidance_scale > 1.0
    learned_variance = scheduler.learned_variance
    reblend = inpaint is not None and unet.version == "2.2"
    steps = [int(t) for t in timesteps]
    steps_on_device = torch.tensor(steps, device=x.device)  # one copy up front: no host sync per step
    for i, t in enumerate(steps):
        model_in = torch.cat([x, x]) if cfg else x
        if inpaint is not None:
            model_in = torch.cat([model_in, inpaint.extra], dim=1)
        out = unet.unet(model_in, steps_on_device[i], cond.image_embeds, hint=hint, text_embeds=cond.text_embeds,
                        text_hidden_states=cond.text_hidden_states)
        if cfg:
            eps, var = out.split(x.shape[1], dim=1)
            eps_u, eps_c = eps.chunk(2)
            out = torch.cat([eps_u + guidance_scale * (eps_c - eps_u), var.chunk(2)[1]], dim=1)
        if not learned_variance:
            out = out[:, : x.shape[1]]
        x0 = scheduler.predict_original(out[:, : x.shape[1]], x, t)  # for the host's preview
        x = scheduler.step(out, t, x, generator=generator)
        if reblend:  # 2.2 re-imposes the known region (first batch element only, as diffusers)
            known = inpaint.image_latents[:1]
            if i + 1 < len(steps):
                known = scheduler.add_noise(known, noise, steps_on_device[i + 1 : i + 2])
            keep = inpaint.keep[:1]
            x = keep * known + (1 - keep) * x
        runtime.preview(x0)
        runtime.progress(i + 1, len(steps))
    if reblend:
        keep = inpaint.keep[:1]
        x = keep * inpaint.image_latents[:1] + (1 - keep) * x
    return x
