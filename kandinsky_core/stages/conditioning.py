"""Decoder conditioning: embeds (and, for 2.1, prompt text) arranged as [negative, positive] batches."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..components import DecoderUNet
from ..payloads import Embeds


@dataclass(frozen=True)
class DecoderConditioning:
    image_embeds: torch.Tensor  # B or 2B, D
    text_embeds: torch.Tensor | None = None  # 2.1: pooled M-CLIP text, B or 2B, 768
    text_hidden_states: torch.Tensor | None = None  # 2.1: M-CLIP tokens, B or 2B, 77, 1024


def decoder_conditioning(unet: DecoderUNet, embeds: Embeds, batch: int, cfg: bool,
                         device: torch.device) -> DecoderConditioning:
    """Rows for a latent batch of `batch` (embeds reused cyclically), doubled as [uncond, cond] with cfg."""
    rows = torch.arange(batch) % embeds.batch
    positive, negative = embeds.image_embeds[rows], embeds.negative_image_embeds[rows]
    image = torch.cat([negative, positive]) if cfg else positive
    image = image.to(device=device, dtype=unet.dtype)
    if unet.version != "2.1":
        return DecoderConditioning(image)
    from ..models.mclip import encode_text  # 2.1 only

    prompts = [embeds.prompts[i % len(embeds.prompts)] if embeds.prompts else "" for i in range(batch)]
    pooled, hidden, _ = encode_text(unet.text_encoder, unet.tokenizer, prompts)
    if cfg:
        negatives = [embeds.negative_prompts[i % len(embeds.negative_prompts)] if embeds.negative_prompts else ""
                     for i in range(batch)]
        u_pooled, u_hidden, _ = encode_text(unet.text_encoder, unet.tokenizer, negatives)
        pooled, hidden = torch.cat([u_pooled, pooled]), torch.cat([u_hidden, hidden])
    return DecoderConditioning(image, pooled.to(device, unet.dtype), hidden.to(device, unet.dtype))


def noise_init_latents(unet: DecoderUNet, scheduler, init: torch.Tensor, noise: torch.Tensor,
                       timesteps: torch.Tensor, denoise: float) -> torch.Tensor:
    """Noise the clean latents to where the truncated schedule starts (img2img)."""
    batch = init.shape[0]
    if unet.version == "2.1":
        # 2.1 keeps the original repo's q_sample: linear betas 1e-4..0.02 at t = floor(1000 * strength) - 2
        t = int(scheduler.config.num_train_timesteps * denoise) - 2
        alphas_cumprod = torch.cumprod(1.0 - torch.linspace(0.0001, 0.02, 1000, dtype=torch.float32), dim=0)
        a = alphas_cumprod[t].to(device=init.device, dtype=init.dtype)
        return a**0.5 * init + (1 - a) ** 0.5 * noise
    return scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
