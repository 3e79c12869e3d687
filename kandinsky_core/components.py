"""Loaded model bundles: what the loader nodes output and the stage functions consume."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .configs.scheduler import SchedulerConfig
from .configs.unet import UNetVariant


@dataclass(eq=False)
class PriorModels:
    """KANDINSKY_PRIOR: a prior repo (prior transformer, CLIP text and image towers, scheduler)."""

    name: str  # repo folder name
    version: str  # "2.1" or "2.2"
    prior: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    image_encoder: nn.Module
    image_processor: Any
    scheduler_config: SchedulerConfig
    dtype: torch.dtype
    memory_mode: str = "auto"  # host residency chosen in the loader: "auto" or one of memory.MEMORY_MODES

    @property
    def embed_dim(self) -> int:
        return int(self.prior.clip_mean.shape[-1])

    def modules(self) -> list[nn.Module]:
        return [self.prior, self.text_encoder, self.image_encoder]


@dataclass(eq=False)
class DecoderUNet:
    """KANDINSKY_UNET: a decoder UNet with its schedulers (and, for 2.1, its text encoder)."""

    name: str
    variant: UNetVariant
    unet: nn.Module
    scheduler_configs: dict[str, SchedulerConfig]  # subfolder name -> config ("scheduler", "ddpm_scheduler")
    dtype: torch.dtype
    latent_multiple: int  # latent sides must divide by this (2 ** number of UNet downsamplings)
    text_encoder: nn.Module | None = None  # 2.1 only (M-CLIP)
    tokenizer: Any = None  # 2.1 only
    memory_mode: str = "auto"  # host residency chosen in the loader: "auto" or one of memory.MEMORY_MODES

    @property
    def version(self) -> str:
        return self.variant.version

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.unet, self.text_encoder) if m is not None]


@dataclass(eq=False)
class MoVQModel:
    """KANDINSKY_MOVQ: the MoVQ autoencoder of a decoder repo."""

    name: str
    version: str
    movq: nn.Module
    dtype: torch.dtype
    extra: dict = field(default_factory=dict)
    memory_mode: str = "auto"  # host residency chosen in the loader: "auto" or one of memory.MEMORY_MODES

    @property
    def scale_factor(self) -> int:
        return int(self.movq.scale_factor)

    def modules(self) -> list[nn.Module]:
        return [self.movq]
