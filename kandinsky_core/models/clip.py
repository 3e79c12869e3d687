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
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch

if TYPE_CHECKING:  # transformers is imported when a model loads, not with the pack (it costs seconds)
    from transformers import CLIPImageProcessor, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

logger = logging.getLogger(__name__)


def _load_model(cls, folder: str | os.PathLike, dtype: torch.dtype, device: torch.device | str, component: str):
    """Build from config.json on meta and load strictly through the core's weight reader."""
    from ..loading.transformers_models import load_transformers_model

    return load_transformers_model(folder, cls, component, f"CLIP {component} ({cls.__name__})", dtype, device)


def load_clip_text_encoder(
    folder: str | os.PathLike, dtype: torch.dtype, device: torch.device | str
) -> CLIPTextModelWithProjection:
    """Load a CLIPTextModelWithProjection from a local transformers folder, in eval mode."""
    from transformers import CLIPTextModelWithProjection

    return _load_model(CLIPTextModelWithProjection, folder, dtype, device, "text_encoder")


def load_clip_image_encoder(
    folder: str | os.PathLike, dtype: torch.dtype, device: torch.device | str
) -> CLIPVisionModelWithProjection:
    """Load a CLIPVisionModelWithProjection from a local transformers folder, in eval mode."""
    from transformers import CLIPVisionModelWithProjection

    return _load_model(CLIPVisionModelWithProjection, folder, dtype, device, "image_encoder")


def load_clip_tokenizer(folder: str | os.PathLike) -> CLIPTokenizer:
    """Load the CLIP BPE tokenizer (vocab.json + merges.txt, or tokenizer.json) from a local folder."""
    from transformers import CLIPTokenizer

    from ..loading.transformers_models import check_tokenizer_folder, load_tokenizer

    path = check_tokenizer_folder(folder, (("vocab.json", "merges.txt"), ("tokenizer.json",)), "CLIP tokenizer")
    return load_tokenizer((CLIPTokenizer,), path, "CLIP tokenizer")


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
