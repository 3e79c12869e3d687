"""CLIP glue for the Kandinsky 2.x prior: transformers' CLIP text/vision towers, tokenizer and image
processor, used exactly as diffusers' prior pipelines use them.

Works with transformers 4.5x and 5.x (only APIs both lines have).

Image inputs accepted by `encode_images`:
* PIL images (one or a list): `image_processor` -> pixel values, as diffusers does.
* a ComfyUI IMAGE tensor (N, H, W, 3), float in [0, 1]: each image is converted to an 8-bit PIL image
  with round(255 * x) (round half to even, after clamping to [0, 1]) and then goes through the processor,
  so the result equals diffusers given those same PIL images.
* a tensor (N, 3, S, S) already CLIP-preprocessed (S = the encoder's image size): fed to the encoder
  as-is, like diffusers does with tensor inputs.
"""
from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch

if TYPE_CHECKING:  # transformers is imported when a model loads, not with the pack (it costs seconds)
    from transformers import CLIPImageProcessor, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

logger = logging.getLogger(__name__)


def _transformers_version() -> tuple[int, int]:
    import transformers

    m = re.match(r"(\d+)\.(\d+)", transformers.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _dtype_kwargs(dtype: torch.dtype) -> dict:
    """transformers renamed `torch_dtype` to `dtype` in 4.56; older releases only know `torch_dtype`."""
    return {"dtype": dtype} if _transformers_version() >= (4, 56) else {"torch_dtype": dtype}


def _load_model(cls, folder: str | os.PathLike, dtype: torch.dtype, device: torch.device | str):
    if not os.path.isdir(folder):
        raise ValueError(f"CLIP model folder {folder!r} does not exist; expected a transformers model folder "
                         "(config.json + model.safetensors).")
    # local_files_only: never download. safetensors is preferred; a legacy pytorch_model.bin is read with
    # torch.load(weights_only=True) (transformers' default, also refused on torch < 2.6), so no pickled code runs.
    with _no_progress_bars():
        model = cls.from_pretrained(folder, local_files_only=True, weights_only=True, **_dtype_kwargs(dtype))
    return model.to(device).eval()


@contextmanager
def _no_progress_bars():
    """transformers' per-load "Loading weights" bars stay out of the host's log (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_clip_text_encoder(
    folder: str | os.PathLike, dtype: torch.dtype, device: torch.device | str
) -> CLIPTextModelWithProjection:
    """Load a CLIPTextModelWithProjection from a local transformers folder, in eval mode."""
    from transformers import CLIPTextModelWithProjection

    return _load_model(CLIPTextModelWithProjection, folder, dtype, device)


def load_clip_image_encoder(
    folder: str | os.PathLike, dtype: torch.dtype, device: torch.device | str
) -> CLIPVisionModelWithProjection:
    """Load a CLIPVisionModelWithProjection from a local transformers folder, in eval mode."""
    from transformers import CLIPVisionModelWithProjection

    return _load_model(CLIPVisionModelWithProjection, folder, dtype, device)


def load_clip_tokenizer(folder: str | os.PathLike) -> CLIPTokenizer:
    """Load the CLIP BPE tokenizer (vocab.json, merges.txt, ...) from a local folder."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def load_clip_image_processor(folder: str | os.PathLike) -> CLIPImageProcessor:
    """Load the CLIPImageProcessor (preprocessor_config.json) from a local folder."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor.from_pretrained(folder, local_files_only=True)


def _param(module: torch.nn.Module) -> torch.Tensor:
    return next(module.parameters())


@torch.no_grad()
def encode_prompts(
    text_encoder: CLIPTextModelWithProjection, tokenizer: CLIPTokenizer, prompts: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts -> (text_embeds (N, D), last_hidden_state (N, 77, W), attention mask (N, 77) bool).

    The text tower runs WITHOUT the attention mask (causal mask only), as in diffusers; the mask is for
    the prior."""
    max_len = tokenizer.model_max_length
    tokens = tokenizer(prompts, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt")
    untruncated = tokenizer(prompts, padding="longest", return_tensors="pt").input_ids
    if untruncated.shape[-1] > max_len:
        removed = tokenizer.batch_decode(untruncated[:, max_len - 1 : -1], skip_special_tokens=True)
        logger.warning(
            "Part of the prompt was truncated because CLIP can only handle sequences up to %d tokens: %s",
            max_len, [r for r in removed if r],
        )
    device = _param(text_encoder).device
    out = text_encoder(tokens.input_ids.to(device))
    return out.text_embeds, out.last_hidden_state, tokens.attention_mask.bool().to(device)


def _image_size(image_encoder: CLIPVisionModelWithProjection) -> tuple[int, int]:
    size = image_encoder.config.image_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def comfy_to_pil(images: torch.Tensor) -> list[PIL.Image.Image]:
    """ComfyUI IMAGE (N, H, W, 3) float [0, 1] -> list of 8-bit RGB PIL images, round(255 * x)."""
    arr = torch.round(images.detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    return [PIL.Image.fromarray(np.ascontiguousarray(a)) for a in arr]


@torch.no_grad()
def encode_images(
    image_encoder: CLIPVisionModelWithProjection,
    image_processor: CLIPImageProcessor,
    images: PIL.Image.Image | list[PIL.Image.Image] | torch.Tensor,
) -> torch.Tensor:
    """Images -> CLIP image_embeds (N, D). See the module docstring for the accepted inputs."""
    param = _param(image_encoder)
    size = _image_size(image_encoder)
    if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[1] == 3 and images.shape[2:] == size:
        pixels = images  # already CLIP-preprocessed: fed as-is
    else:
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(
                    f"Image tensor of shape {tuple(images.shape)} is neither a ComfyUI IMAGE (N, H, W, 3) nor "
                    f"CLIP-preprocessed pixels (N, 3, {size[0]}, {size[1]})."
                )
            images = comfy_to_pil(images)
        elif isinstance(images, PIL.Image.Image):
            images = [images]
        pixels = image_processor(images, return_tensors="pt").pixel_values
    return image_encoder(pixels.to(param.device, param.dtype)).image_embeds


@torch.no_grad()
def zero_image_embeds(image_encoder: CLIPVisionModelWithProjection, batch: int) -> torch.Tensor:
    """CLIP embedding of an all-zero (normalized pixel space) image, repeated to `batch` rows (B, D)."""
    param = _param(image_encoder)
    h, w = _image_size(image_encoder)
    zeros = torch.zeros(1, 3, h, w, device=param.device, dtype=param.dtype)
    return image_encoder(zeros).image_embeds.repeat(batch, 1)
