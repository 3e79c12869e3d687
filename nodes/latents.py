"""ComfyUI LATENT dicts: {"samples": B,4,h,w, optional "noise_mask" (1 = repaint), "batch_index", ...}."""
from __future__ import annotations

import torch


def latent_samples(latent: dict) -> torch.Tensor:
    """The "samples" tensor of a LATENT, with a clear error for anything else."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise ValueError(
            "Expected a ComfyUI LATENT (a dict with a 'samples' tensor), e.g. from EmptyLatentImage or "
            f"KandinskyMoVQEncode; got {type(latent).__name__}."
        )
    return samples


def sampler_output(latent: dict, samples: torch.Tensor) -> dict:
    """The sampler's LATENT: the input's extra keys with new samples and without "noise_mask".

    The mask is consumed: the samples are already inpainted, and a following sampler (e.g. a refining
    pass with a non-inpaint UNet) must not treat them as an inpainting input again.
    """
    out = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask", "masked_samples")}
    if samples.shape[0] != latent["samples"].shape[0]:
        out.pop("batch_index", None)  # the batch was expanded to the embeds' batch
    out["samples"] = samples
    return out
