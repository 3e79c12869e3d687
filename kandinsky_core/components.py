"""Loaded model bundles: what the loader nodes output and the stage functions consume."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .configs.scheduler import SchedulerConfig
from .configs.unet import UNetVariant
from .configs.unet3 import UNet3Variant


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
    variant: UNetVariant | UNet3Variant  # UNet3Variant for Kandinsky 3 (version "3")
    unet: nn.Module
    scheduler_configs: dict[str, SchedulerConfig]  # subfolder name -> config ("scheduler", "ddpm_scheduler")
    dtype: torch.dtype
    latent_multiple: int  # latent sides must divide by this (2 ** number of UNet downsamplings)
    text_encoder: nn.Module | None = None  # 2.1 only (M-CLIP); Kandinsky 3 has its own TextEncoderModels
    tokenizer: Any = None  # 2.1 only
    memory_mode: str = "auto"  # host residency chosen in the loader: "auto" or one of memory.MEMORY_MODES
    # a UNet of the original ai-forever K3 release: "base", "inpainting" or "flash", and its learned
    # unconditional context token (what the original sampler guides against)
    original_kind: str | None = None
    null_embedding: torch.Tensor | None = None

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


@dataclass(eq=False)
class TextEncoderModels:
    """KANDINSKY_TEXT_ENCODER: the Kandinsky 3 text encoder (transformers T5EncoderModel, Flan-UL2) and its
    tokenizer, from a kandinsky-3 repo folder (text_encoder/ + tokenizer/)."""

    name: str  # repo folder name
    version: str  # "3"
    text_encoder: nn.Module
    tokenizer: Any
    dtype: torch.dtype  # dtype of the encoder's weights (its `wo` layers stay fp32 when this is fp16)
    memory_mode: str = "auto"  # host residency chosen in the loader: "auto" or one of memory.MEMORY_MODES

    @property
    def hidden_size(self) -> int:
        return int(self.text_encoder.config.d_model)

    def modules(self) -> list[nn.Module]:
        return [self.text_encoder]


@dataclass(eq=False)
class DepthModel:
    """KANDINSKY_DEPTH_MODEL: a transformers depth-estimation model folder (DPT, Depth Anything, ...)."""

    name: str  # folder name
    model: nn.Module  # an AutoModelForDepthEstimation class, e.g. DPTForDepthEstimation
    image_processor: Any  # its image processor (preprocessor_config.json), as transformers' pipeline uses it
    dtype: torch.dtype
    memory_mode: str = "auto"  # host residency chosen in the loader: "auto" or one of memory.MEMORY_MODES

    def modules(self) -> list[nn.Module]:
        return [self.model]
