"""Kandinsky 3 prompt encoding: prompts -> TextEmbeds, exactly as Kandinsky3Pipeline.encode_prompt (spec §4.13)."""
from __future__ import annotations

import logging

import torch

from ..components import TextEncoderModels
from ..payloads import TextEmbeds
from ..runtime import Runtime

logger = logging.getLogger(__name__)


def _cut_context(hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the padding states and keep the longest prompt's tokens plus one padding position."""
    hidden = hidden.masked_fill(mask[:, :, None] == 0, 0.0)
    length = int(mask.sum(-1).max()) + 1
    return hidden[:, :length], mask[:, :length]


def encode_prompts(text_encoder: TextEncoderModels, prompts: list[str], negative_prompt: str | None,
                   runtime: Runtime) -> TextEmbeds:
    """One row per prompt; `negative_prompt` None (or "") gives zero negatives with an all-zero mask.

    The negative prompt is encoded once, truncated to the prompts' token count and zeroed at its padding,
    then used for every row. Embeddings come back float32 on the CPU (lossless for every encoder dtype).
    """
    from ..models.t5 import encode

    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"encode_prompts expects a non-empty list of prompt strings, got {prompts!r}.")
    if text_encoder.version != "3":
        raise ValueError(f"The text encoder '{text_encoder.name}' is Kandinsky {text_encoder.version}, not 3.")
    runtime.load(text_encoder.modules())
    hidden, mask = encode(text_encoder.text_encoder, text_encoder.tokenizer, prompts)
    hidden, mask = _cut_context(hidden, mask)
    # diffusers casts to the encoder's dtype here, which the states already have (the final norm's dtype);
    # float32 holds every fp16/bf16 value exactly
    embeds = (hidden * mask[:, :, None]).float().cpu()
    if negative_prompt:
        neg_hidden, neg_mask = encode(text_encoder.text_encoder, text_encoder.tokenizer, [negative_prompt])
        neg_hidden, neg_mask = neg_hidden[:, : mask.shape[1]], neg_mask[:, : mask.shape[1]]
        negative = (neg_hidden * neg_mask[:, :, None]).float().cpu()
        negative, neg_mask = negative.expand_as(embeds).contiguous(), neg_mask.expand_as(mask).contiguous()
    else:
        negative, neg_mask = torch.zeros_like(embeds), torch.zeros_like(mask)
    return TextEmbeds(embeds, mask.bool().cpu(), negative, neg_mask.bool().cpu())
