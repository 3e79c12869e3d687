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
class TextEmbeds:
    """KANDINSKY_EMBEDS of Kandinsky 3: masked text-encoder states that condition the K3 UNet.

    As Kandinsky3Pipeline.encode_prompt leaves them: cut to the longest prompt plus one position, zeroed
    where the mask is 0; without a negative prompt the negatives are zeros with an all-zero mask. Rows are
    samples; a run with more latents than rows reuses rows cyclically.
    """

    embeds: torch.Tensor  # B, L, D: positive text states
    mask: torch.Tensor  # B, L bool: True where a token is attended
    negative_embeds: torch.Tensor  # B, L, D: negative text states (zeros when there is no negative prompt)
    negative_mask: torch.Tensor  # B, L bool (all False when there is no negative prompt)
    version: str = "3"

    def __post_init__(self) -> None:
        if self.embeds.ndim != 3 or self.negative_embeds.shape != self.embeds.shape:
            raise ValueError(
                "TextEmbeds need positive and negative states of the same (batch, tokens, width) shape, got "
                f"{tuple(self.embeds.shape)} and {tuple(self.negative_embeds.shape)}."
            )
        for name, mask in (("mask", self.mask), ("negative_mask", self.negative_mask)):
            if mask.dtype != torch.bool or tuple(mask.shape) != tuple(self.embeds.shape[:2]):
                raise ValueError(
                    f"TextEmbeds.{name} must be a bool (batch, tokens) = {tuple(self.embeds.shape[:2])} tensor, got "
                    f"{mask.dtype} {tuple(mask.shape)}."
                )
        if self.version != "3":
            raise ValueError(f"TextEmbeds are Kandinsky 3 embeddings (version '3'), got version {self.version!r}.")

    @property
    def batch(self) -> int:
        return self.embeds.shape[0]

    @property
    def width(self) -> int:
        return self.embeds.shape[2]


@dataclass(frozen=True)
class Hint:
    """KANDINSKY_HINT: a depth map for the 2.2 depth ControlNet UNet."""

    image: torch.Tensor  # B, 3, H, W float32 in [0, 1]

    def __post_init__(self) -> None:
        if self.image.ndim != 4 or self.image.shape[1] != 3:
            raise ValueError(f"A hint is a (B, 3, H, W) tensor, got {tuple(self.image.shape)}.")
