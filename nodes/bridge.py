"""The comfy-free half of the ComfyUI bridge: CONDITIONING payloads, the sigma table and schedule names,
conditioning checks and the measured memory estimate. nodes/comfy_bridge.py builds ComfyUI objects on it.

CONDITIONING is ComfyUI's list of [tensor, dict] pairs. KandinskyConditioning puts the image embeddings
(B, 1, D) (Kandinsky 3: the T5 text states (B, L, D)) where ComfyUI expects the cross-attention tensor, so
stock conditioning nodes (combine, zero out, timestep ranges) act on them, and the rest in the dict:
  kandinsky_version    "2.1" / "2.2" / "3": checked against the UNet
  kandinsky_texts      2.1: the decoder prompt per row (the UNet's M-CLIP encodes them at sampling time)
  kandinsky_hint       a Hint (depth ControlNet), both in the positive and the negative
  kandinsky_text_mask  3: the states' attention mask (B, L) bool, True where a token is attended
"""
from __future__ import annotations

import torch

from ..kandinsky_core.components import DecoderUNet
from ..kandinsky_core.configs.scheduler import SchedulerConfig
from ..kandinsky_core.payloads import Embeds, Hint, TextEmbeds
from ..kandinsky_core.schedulers.sigmas import sigmas_for

VERSION, TEXTS, HINT, TEXT_MASK = "kandinsky_version", "kandinsky_texts", "kandinsky_hint", "kandinsky_text_mask"

# diffusers beta_schedule (scheduler_config.json) -> ComfyUI's make_beta_schedule name. ComfyUI's "linear"
# is the scaled-linear schedule (linspace of sqrt(beta), squared); diffusers' plain linspace is "sqrt_linear".
# diffusers' squaredcos_cap_v2 (Kandinsky 3) is ComfyUI's "cosine" with its default cosine_s = 0.008 (the
# same betas, 1 - abar(t+1)/abar(t) capped at 0.999); ComfyUI's own "squaredcos_cap_v2" returns a numpy
# array that ModelSamplingDiscrete cannot cumprod (0.3.64 and 0.33.0), so it is not used.
COMFY_BETA_SCHEDULE = {"linear": "sqrt_linear", "scaled_linear": "linear", "squaredcos_cap_v2": "cosine"}

# Peak activation bytes of one fp32 UNet call, measured on the full-size configs with
# benchmarks/measure_unet_memory.py: peak RSS above the loaded weights during a no_grad forward of batch 2
# (cond + uncond, as KSampler batches them) at latent sides 24 and 48 on the CPU (glibc's mmap threshold
# fixed at 64 KiB so freed activations leave the RSS). The slope between the two sizes, per sample and
# latent pixel, is the per-pixel part (2.2: 11103, 2.1: 10855 bytes); the intercept (341 MB for both, kernel
# and allocator scratch independent of the size) is the fixed part. Both scale with the inference dtype's
# element size. Kandinsky 3 (3.06 B parameters, zero weights built on meta, batch 2, 128 tokens x 4096 T5
# states with half of them masked), at sides 32 and 64:
#   MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/measure_unet_memory.py --version 3 --sides 32 64
#   {"version": "3", "tokens": 128, "peak_bytes": {"32": 179863552, "64": 250531840},
#    "bytes_per_sample_latent_pixel": 11502, "intercept_bytes": 156307456}
# (sides 16 and 32 gave 12195 bytes per pixel and 154864299 fixed: the slope does not grow with the size).
ACTIVATION_BYTES_PER_LATENT_PIXEL = {"2.1": 10_855, "2.2": 11_103, "3": 11_502}
ACTIVATION_FIXED_BYTES = {"2.1": 341_590_016, "2.2": 341_128_533, "3": 156_307_456}
# ComfyUI's BaseModel.memory_required (with PyTorch SDPA) is latent pixels x dtype size x 0.01 x factor MiB:
# the factor that gives our per-pixel bytes, for code that reads memory_usage_factor directly.
_COMFY_BYTES_PER_FACTOR = 0.01 * 1024 * 1024


def conditioning_pair(embeds: Embeds | TextEmbeds, hint: Hint | None = None) -> tuple[list, list]:
    """(positive, negative) CONDITIONING: the prior's embeddings and its own negative embeddings
    (not zeros), for 2.1 with the prompts / negative prompts, with the depth hint on both; for Kandinsky 3
    the text encoder's states and masks (the negative's as the encoder made them: zeros with an all-False
    mask without a negative prompt)."""
    if isinstance(embeds, TextEmbeds):
        return text_conditioning_pair(embeds, hint)
    rows = embeds.batch

    def entry(image_embeds: torch.Tensor, texts: tuple[str, ...]) -> list:
        extras = {VERSION: embeds.version}
        if embeds.version == "2.1":
            extras[TEXTS] = tuple(texts[i % len(texts)] for i in range(rows)) if texts else ("",) * rows
        if hint is not None:
            extras[HINT] = hint
        return [[image_embeds.detach().float().cpu()[:, None, :], extras]]  # B, D -> B, 1, D

    return entry(embeds.image_embeds, embeds.prompts), entry(embeds.negative_image_embeds, embeds.negative_prompts)


def text_conditioning_pair(embeds: TextEmbeds, hint: Hint | None = None) -> tuple[list, list]:
    """Kandinsky 3 (positive, negative): states (B, L, D) as the cross-attention tensor, the mask in the dict.
    Both have the same L (the encoder cuts them together), so KSampler runs cond and uncond in one batch."""
    if hint is not None:
        raise ValueError("A hint was given with Kandinsky 3 text embeds, but Kandinsky 3 takes no depth hint: "
                         "disconnect the hint.")

    def entry(states: torch.Tensor, mask: torch.Tensor) -> list:
        return [[states.detach().float().cpu(), {VERSION: "3", TEXT_MASK: mask.detach().bool().cpu()}]]

    return entry(embeds.embeds, embeds.mask), entry(embeds.negative_embeds, embeds.negative_mask)


def check_conditioning(unet: DecoderUNet, cond: dict) -> None:
    """Raise a ValueError naming the mismatch between a CONDITIONING entry (as extra_conds gets it) and the UNet."""
    variant, version = unet.variant, cond.get(VERSION)
    if version is None:
        raise ValueError(
            f"The Kandinsky MODEL '{unet.name}' got a CONDITIONING that KandinskyConditioning did not make (e.g. "
            "CLIPTextEncode): connect KandinskyConditioning's positive and negative outputs."
        )
    if version == "3" or variant.version == "3":
        _check_text_conditioning(unet, cond)
        return
    embeds = cond.get("cross_attn")
    if version != variant.version or embeds is None or embeds.shape[-1] != variant.image_embed_dim:
        raise ValueError(
            f"This conditioning comes from Kandinsky {version} embeds but the UNet '{unet.name}' is Kandinsky "
            f"{variant.version} (image embeds of width {variant.image_embed_dim}): use the prior of the same version."
        )
    if variant.task == "depth" and cond.get(HINT) is None:
        raise ValueError(f"The UNet '{unet.name}' is a depth ControlNet: connect a hint to KandinskyConditioning.")
    if variant.task != "depth" and cond.get(HINT) is not None:
        raise ValueError(
            f"The conditioning carries a depth hint but the UNet '{unet.name}' is not a depth ControlNet: load "
            "kandinsky-2-2-controlnet-depth, or disconnect the hint."
        )


def _check_text_conditioning(unet: DecoderUNet, cond: dict) -> None:
    """Kandinsky 3: K3 conditioning (states of the UNet's width with a matching mask) with a K3 UNet."""
    variant, version = unet.variant, cond.get(VERSION)
    if version != variant.version:
        made_by = ("Kandinsky 3 text embeds (KandinskyTextEncode)" if version == "3"
                   else f"Kandinsky {version} embeds (a prior)")
        use = ("KandinskyTextEncode with the text encoder of the same kandinsky-3 folder" if variant.version == "3"
               else f"embeds of a Kandinsky {variant.version} prior (KandinskyPriorEncode)")
        raise ValueError(
            f"This conditioning comes from {made_by} but the UNet '{unet.name}' is Kandinsky {variant.version}: "
            f"use {use}."
        )
    states, mask = cond.get("cross_attn"), cond.get(TEXT_MASK)
    if states is None or states.ndim != 3 or states.shape[-1] != variant.text_hidden_dim:
        got = None if states is None else tuple(states.shape)
        raise ValueError(
            f"The UNet '{unet.name}' reads Kandinsky 3 text states of width {variant.text_hidden_dim}, got a "
            f"conditioning tensor of shape {got}: use the text encoder of the same Kandinsky 3 repo."
        )
    if mask is None or tuple(mask.shape) != tuple(states.shape[:2]):
        raise ValueError(
            f"The Kandinsky 3 conditioning's text mask {None if mask is None else tuple(mask.shape)} does not match "
            f"its states {tuple(states.shape)} (a node between KandinskyConditioning and the sampler changed the "
            "token length, e.g. ConditioningConcat): connect KandinskyConditioning's outputs directly."
        )
    if cond.get(HINT) is not None:
        raise ValueError(f"The conditioning carries a depth hint but the UNet '{unet.name}' is Kandinsky 3, which "
                         "takes none: disconnect the hint.")


def check_bridgeable(unet: DecoderUNet) -> None:
    """The bridge MODEL takes the 2.x UNets and the plain Kandinsky 3 UNet; the original 3.1 Flash and
    inpainting UNets sample only with their own samplers."""
    if unet.version == "3" and (unet.original_kind in ("flash", "inpainting") or unet.variant.task != "text2img"):
        raise ValueError(
            f"'{unet.name}' is the Kandinsky 3.1 {unet.original_kind or unet.variant.task} UNet, which samples only "
            "with its own sampler: use KandinskyUNetSampler (sampler flash / k3_original) instead of a MODEL."
        )


def training_config(unet: DecoderUNet) -> SchedulerConfig:
    """The repo's own training schedule (its `scheduler/` config)."""
    return unet.scheduler_configs["scheduler"]


def training_sigmas(unet: DecoderUNet) -> torch.Tensor:
    """sqrt((1 - abar) / abar) of the training schedule, float32 as diffusers and the core compute abar."""
    return sigmas_for(training_config(unet))


def comfy_sampling_settings(config: SchedulerConfig) -> dict:
    """The schedule in ComfyUI's model_config.sampling_settings names (what ModelSamplingDiscrete rebuilds from)."""
    if config.trained_betas is not None or config.rescale_betas_zero_snr:
        raise ValueError(
            f"scheduler_config.json with trained_betas or rescale_betas_zero_snr is not supported by the ComfyUI "
            f"bridge (ComfyUI's model_config cannot describe it); got beta_schedule {config.beta_schedule!r}."
        )
    return {"beta_schedule": COMFY_BETA_SCHEDULE[config.beta_schedule], "linear_start": config.beta_start,
            "linear_end": config.beta_end, "timesteps": config.num_train_timesteps}


def activation_bytes(unet: DecoderUNet, batch: int, height: int, width: int, element_size: int) -> int:
    """Estimated peak activation bytes of one UNet call on (batch, *, height, width) latents."""
    per_pixel = ACTIVATION_BYTES_PER_LATENT_PIXEL[unet.version] * batch * height * width
    return int((per_pixel + ACTIVATION_FIXED_BYTES[unet.version]) * element_size / 4)


def memory_usage_factor(unet: DecoderUNet) -> float:
    """ComfyUI's memory_usage_factor equivalent of the measured bytes (fp32 element size 4 -> per dtype byte)."""
    return ACTIVATION_BYTES_PER_LATENT_PIXEL[unet.version] / 4 / _COMFY_BYTES_PER_FACTOR


def movq_decode_bytes(shape, scale_factor: int, dtype: torch.dtype) -> int:
    """Per-sample decode estimate for (B, 4, h, w) latents: ComfyUI's AutoencoderKL rule (not measured for
    the MoVQ, whose decoder has the same widths plus SpatialNorm; ComfyUI splits the batch by it)."""
    pixels = shape[2] * shape[3] * scale_factor * scale_factor
    return int(2178 * pixels * torch.finfo(dtype).bits // 8)


def movq_encode_bytes(shape, dtype: torch.dtype) -> int:
    """Per-sample encode estimate for (B, 3, H, W) pixels: ComfyUI's AutoencoderKL rule."""
    return int(1767 * shape[2] * shape[3] * torch.finfo(dtype).bits // 8)
