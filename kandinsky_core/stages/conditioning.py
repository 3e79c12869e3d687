"""Decoder conditioning: embeds (and, for 2.1, prompt text; for 3, masked text states) arranged as
[negative, positive] batches."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..components import DecoderUNet
from ..payloads import Embeds, TextEmbeds


@dataclass(frozen=True)
class DecoderConditioning:
    image_embeds: torch.Tensor | None  # 2.x: B or 2B, D (None for 3)
    text_embeds: torch.Tensor | None = None  # 2.1: pooled M-CLIP text, B or 2B, 768
    text_hidden_states: torch.Tensor | None = None  # 2.1: M-CLIP tokens, B or 2B, 77, 1024; 3: T5 states, B, L, D
    text_mask: torch.Tensor | None = None  # 3: B or 2B, L bool, True where a token is attended


def conditioning_for(unet: DecoderUNet, embeds: Embeds | TextEmbeds, batch: int, cfg: bool,
                     device: torch.device) -> DecoderConditioning:
    """The UNet's conditioning for `batch` latents: 2.x image embeds (decoder_conditioning) or K3 text states."""
    if unet.version == "3":
        return text_conditioning(unet, embeds, batch, cfg, device)
    return decoder_conditioning(unet, embeds, batch, cfg, device)


def text_conditioning(unet: DecoderUNet, embeds: TextEmbeds, batch: int, cfg: bool,
                      device: torch.device) -> DecoderConditioning:
    """Kandinsky 3: text states and mask for `batch` latents (rows reused cyclically), [negative, positive]
    with guidance (the text encoder's own negative states, zeros with an all-False mask without a negative)."""
    if embeds.width != unet.variant.text_hidden_dim:
        raise ValueError(
            f"The text embeds are {embeds.width} wide but the UNet '{unet.name}' reads {unet.variant.text_hidden_dim}-"
            "wide text states: use the text encoder of the same Kandinsky 3 repo."
        )
    rows = torch.arange(batch) % embeds.batch
    states, mask = embeds.embeds[rows], embeds.mask[rows]
    if cfg:
        states = torch.cat([embeds.negative_embeds[rows], states])
        mask = torch.cat([embeds.negative_mask[rows], mask])
    return DecoderConditioning(None, text_hidden_states=states.to(device=device, dtype=unet.dtype),
                               text_mask=mask.to(device))


def decoder_conditioning(unet: DecoderUNet, embeds: Embeds, batch: int, cfg: bool,
                         device: torch.device) -> DecoderConditioning:
    """Rows for a latent batch of `batch` (embeds reused cyclically), doubled as [uncond, cond] with cfg."""
    rows = torch.arange(batch) % embeds.batch
    positive, negative = embeds.image_embeds[rows], embeds.negative_image_embeds[rows]
    image = torch.cat([negative, positive]) if cfg else positive
    image = image.to(device=device, dtype=unet.dtype)
    if unet.version != "2.1":
        return DecoderConditioning(image)
    pooled, hidden = _encode_texts(unet, _texts(embeds.prompts, batch))
    if cfg:
        u_pooled, u_hidden = _encode_texts(unet, _texts(embeds.negative_prompts, batch))
        pooled, hidden = torch.cat([u_pooled, pooled]), torch.cat([u_hidden, hidden])
    return DecoderConditioning(image, pooled.to(device, unet.dtype), hidden.to(device, unet.dtype))


def _texts(texts: tuple[str, ...], batch: int) -> list[str]:
    """One text per latent row, reused cyclically like the embeds ("" when the embeds carry none)."""
    return [texts[i % len(texts)] for i in range(batch)] if texts else [""] * batch


def _encode_texts(unet: DecoderUNet, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """M-CLIP features per row, each distinct text encoded once (as diffusers encodes a prompt once and
    repeats it for its images): pooled (B, 768) and token states (B, 77, 1024)."""
    from ..models.mclip import encode_text  # 2.1 only

    unique = list(dict.fromkeys(texts))
    pooled, hidden, _ = encode_text(unet.text_encoder, unet.tokenizer, unique)
    position = {text: i for i, text in enumerate(unique)}
    rows = torch.tensor([position[t] for t in texts], device=pooled.device)
    return pooled[rows], hidden[rows]


def noise_init_latents(unet: DecoderUNet, scheduler, init: torch.Tensor, noise: torch.Tensor,
                       timesteps: torch.Tensor, denoise: float) -> torch.Tensor:
    """Noise the clean latents to where the truncated schedule starts (img2img)."""
    batch = init.shape[0]
    if unet.version == "2.1":
        # 2.1 keeps the original repo's q_sample: linear betas 1e-4..0.02 at t = floor(1000 * strength) - 2
        t = int(scheduler.config.num_train_timesteps * denoise) - 2
        alphas_cumprod = torch.cumprod(1.0 - torch.linspace(0.0001, 0.02, 1000, dtype=torch.float32), dim=0)
        a = alphas_cumprod[t].to(device=init.device, dtype=init.dtype)
        # contiguous like diffusers' result (MoVQ latents come out channels-last; the layout changes conv rounding)
        return (a**0.5 * init + (1 - a) ** 0.5 * noise).contiguous()
    return scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
