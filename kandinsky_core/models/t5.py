"""Kandinsky 3 text encoder glue: transformers' T5EncoderModel (Flan-UL2's encoder) and the T5 tokenizer,
loaded from a kandinsky-3 repo's text_encoder/ and tokenizer/ folders, used as Kandinsky3Pipeline uses them.

Works with transformers 4.5x and 5.x. Precision (spec §7.1): T5 feed-forward outputs overflow fp16, so bf16
or fp32 is recommended; in fp16 the `wo` projections stay fp32 and transformers clamps infinities, as
diffusers runs the official fp16 variant, and any non-finite state left is zeroed (the original K3 code's
safeguard) with a warning.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..loading.transformers_models import check_tokenizer_folder, load_tokenizer, load_transformers_model

logger = logging.getLogger(__name__)

MAX_LENGTH = 128  # Kandinsky3Pipeline pads and truncates prompts to 128 tokens

_TOKENIZER_FILES = (("tokenizer.json",), ("spiece.model",))


def load_t5_encoder(folder: str | os.PathLike, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.nn.Module:
    """The T5EncoderModel of a kandinsky-3 repo's text_encoder/ folder, loaded strictly, in eval mode."""
    from transformers import T5EncoderModel

    if dtype == torch.float16:
        logger.warning("The Kandinsky 3 T5 encoder overflows in plain fp16; its FFN outputs stay fp32 and "
                       "infinities are clamped, but bf16 or fp32 is recommended.")
    return load_transformers_model(folder, T5EncoderModel, "text_encoder", "Kandinsky 3 T5 text encoder", dtype,
                                   device)


def load_t5_tokenizer(folder: str | os.PathLike) -> Any:
    """The T5 tokenizer of a kandinsky-3 repo's tokenizer/ folder (tokenizer.json and/or spiece.model)."""
    from transformers import T5Tokenizer, T5TokenizerFast

    path = check_tokenizer_folder(folder, _TOKENIZER_FILES, "Kandinsky 3 T5 tokenizer")
    classes = (T5TokenizerFast,) if T5TokenizerFast is T5Tokenizer else (T5TokenizerFast, T5Tokenizer)
    return load_tokenizer(classes, path, "Kandinsky 3 T5 tokenizer")


@torch.no_grad()
def encode(text_encoder: torch.nn.Module, tokenizer: Any, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (last hidden state (N, 128, D), attention mask (N, 128) int64), tokenized to 128 tokens."""
    tokens = tokenizer(list(prompts), padding="max_length", max_length=MAX_LENGTH, truncation=True,
                       return_tensors="pt")
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    if max(lengths) > MAX_LENGTH:
        logger.warning("Prompt too long for Kandinsky 3: %d tokens, only the first %d are used.", max(lengths),
                       MAX_LENGTH)
    device = text_encoder.get_input_embeddings().weight.device
    mask = tokens.attention_mask.to(device)
    hidden = text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]  # N, 128, D
    if not torch.isfinite(hidden).all():
        logger.warning("The T5 encoder produced non-finite states (fp16 overflow); they are set to 0. "
                       "Load the text encoder in bf16 or fp32.")
        hidden = torch.nan_to_num(hidden, nan=0.0, posinf=0.0, neginf=0.0)
    return hidden, mask
