"""Typed payloads that travel between nodes (the custom socket types)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Embeds:
    """KANDINSKY_EMBEDS: CLIP image embeddings that condition a decoder UNet.

    Rows are samples; a decoder run with more latents than rows reuses rows cyclically.
    """

    image_embeds: torch.Tensor  # B, D: positive (conditional) embeddings
    negative_image_embeds: torch.Tensor  # B, D: unconditional embeddings for guidance
    version: str  # "2.1" or "2.2": the prior family that produced them
    prompts: tuple[str, ...] = ()  # 2.1 only: decoder text per row ("" when made from images)
    negative_prompts: tuple[str, ...] = ()  # 2.1 only: decoder negative text per row

    def __post_init__(self) -> None:
        if self.image_embeds.ndim != 2 or self.image_embeds.shape != self.negative_image_embeds.shape:
            raise ValueError(
                "Embeds need positive and negative tensors of the same (batch, width) shape, got "
                f"{tuple(self.image_embeds.shape)} and {tuple(self.negative_image_embeds.shape)}."
            )

    @property
    def batch(self) -> int:
        return self.image_embeds.shape[0]

    @property
    def width(self) -> int:
        return self.image_embeds.shape[1]


@dataclass(frozen=True)
class Hint:
    """KANDINSKY_HINT: a depth map for the 2.2 depth ControlNet UNet."""

    image: torch.Tensor  # B, 3, H, W float32 in [0, 1]

    def __post_init__(self) -> None:
        if self.image.ndim != 4 or self.image.shape[1] != 3:
            raise ValueError(f"A hint is a (B, 3, H, W) tensor, got {tuple(self.image.shape)}.")
