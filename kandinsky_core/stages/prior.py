"""Prior stages: text -> CLIP image embedding, image embedding, weighted mixing, emb2emb.

Each function reproduces the matching diffusers Kandinsky prior pipeline (spec §4.1-4.3) when handed a
CPU generator seeded like the pipeline's.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch

from ..components import PriorModels
from ..models import clip
from ..payloads import Embeds
from ..runtime import Runtime
from ..schedulers import make_scheduler, timesteps_for_strength
from ..schedulers.noise import randn
from .validation import check_guidance, check_pixels, check_steps, check_strength

logger = logging.getLogger(__name__)


def _encode_text(models: PriorModels, prompts: list[str], negatives: list[str] | None, n: int, cfg: bool):
    """CLIP text features for the prior, [uncond, cond] when guiding (diffusers' _encode_prompt)."""
    embeds, hidden, mask = clip.encode_prompts(models.text_encoder, models.tokenizer, prompts)
    embeds, hidden, mask = (x.repeat_interleave(n, dim=0) for x in (embeds, hidden, mask))
    if not cfg:
        return embeds, hidden, mask
    uncond = negatives if negatives is not None else [""] * len(prompts)
    u_embeds, u_hidden, u_mask = clip.encode_prompts(models.text_encoder, models.tokenizer, uncond)
    u_embeds, u_hidden, u_mask = (x.repeat_interleave(n, dim=0) for x in (u_embeds, u_hidden, u_mask))
    return torch.cat([u_embeds, embeds]), torch.cat([u_hidden, hidden]), torch.cat([u_mask, mask])


def _denoise(models: PriorModels, latents, timesteps, scheduler, text, guidance_scale, generator, runtime):
    """The prior's UnCLIP sampling loop over `timesteps` (x0-prediction, CFG on the batch halves)."""
    embeds, hidden, mask = text
    cfg = guidance_scale > 1.0
    steps = [int(t) for t in timesteps]
    steps_on_device = torch.tensor(steps, device=latents.device)  # one copy up front: no host sync per step
    for i, t in enumerate(steps):
        model_input = torch.cat([latents, latents]) if cfg else latents
        pred = models.prior(model_input, steps_on_device[i], proj_embedding=embeds, encoder_hidden_states=hidden,
                            attention_mask=mask)
        if cfg:
            uncond, cond = pred.chunk(2)
            pred = uncond + guidance_scale * (cond - uncond)
        prev_t = steps[i + 1] if i + 1 < len(steps) else None
        latents = scheduler.step(pred, t, latents, prev_timestep=prev_t, generator=generator)
        runtime.progress(i + 1, len(steps))
    return models.prior.post_process_latents(latents)


def _run(models: PriorModels, prompt: str, negative_prompt: str | None, *, generator, steps, guidance_scale,
         num_images_per_prompt, runtime, init_embeds=None, strength=1.0) -> Embeds:
    check_steps(steps, minimum=2, what="prior steps (the UnCLIP scheduler needs at least 2)")
    check_guidance(guidance_scale)
    n = num_images_per_prompt
    if n < 1:
        raise ValueError(f"batch_size must be at least 1, got {n}.")
    runtime.load([models.prior, models.text_encoder])  # the image tower only when needed (zero-image negative)
    device = runtime.device()
    # one prompt row per init image (emb2emb of an image batch); diffusers' layout otherwise
    rows = 1 if init_embeds is None else init_embeds.shape[0]
    prompts = [prompt] * rows + ([negative_prompt] * rows if negative_prompt is not None else [])
    negatives = 2 * rows * [negative_prompt] if negative_prompt is not None else None
    batch = len(prompts) * n
    with torch.no_grad():
        text = _encode_text(models, prompts, negatives, n, guidance_scale > 1.0)
        text = tuple(x.to(device) for x in text)
        dtype = text[0].dtype
        scheduler = make_scheduler(models.scheduler_config)
        timesteps = scheduler.set_timesteps(steps)
        if init_embeds is None:
            latents = randn((batch, models.embed_dim), generator, device, dtype)
        else:
            timesteps = timesteps_for_strength(timesteps, steps, strength)
            init = init_embeds.to(device=device, dtype=dtype).repeat_interleave(n, dim=0)
            if batch % init.shape[0]:
                raise ValueError(f"Cannot spread {init.shape[0]} image embeddings over {batch} prompts.")
            init = torch.cat([init] * (batch // init.shape[0]))
            noise = randn(tuple(init.shape), generator, device, dtype)
            latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
        result = _denoise(models, latents, timesteps, scheduler, text, guidance_scale, generator, runtime)
        if negative_prompt is None:
            positive, negative = result, zero_image_embeds(models, result.shape[0], runtime)
        else:
            positive, negative = result.chunk(2)
    rows = positive.shape[0]
    return Embeds(
        image_embeds=positive.float().cpu(),
        negative_image_embeds=negative.float().cpu(),
        version=models.version,
        prompts=(prompt,) * rows,
        negative_prompts=(negative_prompt or "",) * rows,
    )


def prior_encode(models: PriorModels, prompt: str, negative_prompt: str | None, *, generator: torch.Generator,
                 steps: int = 25, guidance_scale: float = 4.0, num_images_per_prompt: int = 1,
                 runtime: Runtime) -> Embeds:
    """Text -> CLIP image embeddings (KandinskyPriorPipeline / KandinskyV22PriorPipeline.__call__).

    `negative_prompt=None` uses the zero-image embedding as the negative, as diffusers does.
    """
    return _run(models, prompt, negative_prompt, generator=generator, steps=steps, guidance_scale=guidance_scale,
                num_images_per_prompt=num_images_per_prompt, runtime=runtime)


def emb2emb(models: PriorModels, image: torch.Tensor, prompt: str, negative_prompt: str | None, *,
            strength: float, generator: torch.Generator, steps: int = 25, guidance_scale: float = 4.0,
            num_images_per_prompt: int = 1, runtime: Runtime) -> Embeds:
    """Image + text -> embeddings: the image's CLIP embedding noised to `strength` and re-denoised with
    the prompt (KandinskyV22PriorEmb2EmbPipeline). `image` is a ComfyUI IMAGE (B, H, W, 3) in [0, 1]."""
    check_strength(strength, "strength")
    image_embeds = encode_images(models, image, runtime)
    return _run(models, prompt, negative_prompt, generator=generator, steps=steps, guidance_scale=guidance_scale,
                num_images_per_prompt=num_images_per_prompt, runtime=runtime, init_embeds=image_embeds,
                strength=strength)


def encode_images(models: PriorModels, image: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """CLIP image embeddings (B, D) of a ComfyUI IMAGE batch, on the runtime device."""
    check_pixels(image, "image")
    runtime.load([models.image_encoder])
    with torch.no_grad():
        return clip.encode_images(models.image_encoder, models.image_processor, image)


def zero_image_embeds(models: PriorModels, batch: int, runtime: Runtime) -> torch.Tensor:
    """The CLIP embedding of an all-zero (mean-colour) image: the default negative."""
    runtime.load([models.image_encoder])
    with torch.no_grad():
        return clip.zero_image_embeds(models.image_encoder, batch)


def image_embed(models: PriorModels, image: torch.Tensor, *, runtime: Runtime) -> Embeds:
    """Images -> Embeds (one row per image; negative = zero-image embedding), as the prior's image branch."""
    positive = encode_images(models, image, runtime)
    negative = zero_image_embeds(models, positive.shape[0], runtime)
    rows = positive.shape[0]
    return Embeds(positive.float().cpu(), negative.float().cpu(), models.version, ("",) * rows, ("",) * rows)


def interpolate(embeds: Sequence[Embeds], weights: Sequence[float]) -> Embeds:
    """Weighted mix of embeddings (the prior's `interpolate`).

    Positives are summed with the weights as given (diffusers never normalises them); negatives are mixed
    with the normalised weights, which keeps the usual zero-image negative unchanged. Batch-1 inputs
    broadcast to the largest batch.
    """
    if len(embeds) != len(weights) or not embeds:
        raise ValueError(f"Interpolation needs one weight per input, got {len(embeds)} inputs and {len(weights)} weights.")
    total = float(sum(weights))
    if all(w == 0 for w in weights) or total == 0:
        raise ValueError("Interpolation weights are all zero (or cancel out): give at least one input a non-zero weight.")
    versions = {e.version for e in embeds}
    widths = {e.width for e in embeds}
    if len(versions) > 1 or len(widths) > 1:
        raise ValueError(
            "Cannot interpolate embeddings from different Kandinsky versions "
            f"({', '.join(sorted(versions))}; widths {sorted(widths)}): use one prior for every input."
        )
    batch = max(e.batch for e in embeds)
    if any(e.batch not in (1, batch) for e in embeds):
        raise ValueError(f"Interpolation inputs have batches {[e.batch for e in embeds]}: each must be 1 or {batch}.")
    positive = sum(w * e.image_embeds.expand(batch, -1) for e, w in zip(embeds, weights))
    negative = sum((w / total) * e.negative_image_embeds.expand(batch, -1) for e, w in zip(embeds, weights))
    return Embeds(positive, negative, versions.pop(), ("",) * batch, ("",) * batch)
