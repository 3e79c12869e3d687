"""MoVQ autoencoder configuration (diffusers `VQModel` config.json, subfolder `movq`).

Field names mirror the diffusers config keys (`to_diffusers_dict()` gives valid `VQModel` keyword
arguments). Only what the Kandinsky 2.x / 3 MoVQ uses is supported: a decoder with spatially conditioned
normalization (`norm_type="spatial"`), SiLU, the four encoder/decoder block types below, and latents used
as-is (no codebook lookup on decode). Anything else is rejected by `from_dict` naming the key.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from .checks import check_bool, check_float, check_int, check_int_list

logger = logging.getLogger(__name__)

SUPPORTED_DOWN_BLOCKS = ("DownEncoderBlock2D", "AttnDownEncoderBlock2D")
SUPPORTED_UP_BLOCKS = ("UpDecoderBlock2D", "AttnUpDecoderBlock2D")
SPATIAL_NORM_GROUPS = 32  # diffusers' SpatialNorm hard-wires GroupNorm(32 groups, eps 1e-6)
# Bounds of the config's sizes (configs/checks.py): several times the K3 MoVQ's (1024 channels, 2 layers).
MAX_LEVELS = 8
MAX_CHANNELS = 8192
MAX_LAYERS_PER_BLOCK = 16
MAX_CODEBOOK = 1 << 20

# diffusers VQModel defaults for the keys we read (used when config.json omits them).
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 3,
    "vq_embed_dim": None,
    "num_vq_embeddings": 256,
    "block_out_channels": (64,),
    "down_block_types": ("DownEncoderBlock2D",),
    "up_block_types": ("UpDecoderBlock2D",),
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "norm_type": "group",
    "act_fn": "silu",
    "mid_block_add_attention": True,
    "lookup_from_codebook": False,
    "force_upcast": False,
    "scaling_factor": 0.18215,
}


@dataclass(frozen=True)
class MoVQConfig:
    in_channels: int = 3  # image channels in (RGB in [-1, 1])
    out_channels: int = 3  # image channels out
    latent_channels: int = 4  # encoder output / decoder input channels
    vq_embed_dim: int = 4  # codebook vector width (== latent_channels for the spatial decoder)
    num_vq_embeddings: int = 16384  # codebook size (only used by decode(force_not_quantize=False))
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)  # channels per level, highest resolution first
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",)  # encoder levels
    up_block_types: tuple[str, ...] = ("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3  # decoder, lowest res first
    layers_per_block: int = 2  # resnets per encoder level (decoder levels have one more)
    norm_num_groups: int = 32  # GroupNorm groups of the encoder (decoder SpatialNorms always use 32)
    norm_type: str = "spatial"  # decoder normalization: SpatialNorm conditioned on the latent (only value supported)
    act_fn: str = "silu"  # activation everywhere
    mid_block_add_attention: bool = True  # single-head self-attention between the two mid-block resnets
    lookup_from_codebook: bool = False  # diffusers: treat decode input as codebook indices (unsupported, never set)
    force_upcast: bool = False  # diffusers hint to run the autoencoder in fp32; informational only
    scaling_factor: float = 0.18215  # present in config.json but NEVER used: Kandinsky latents are unscaled
    has_quantizer: bool = True  # not a diffusers key: False builds no `quantize` (for a state dict without it)

    def __post_init__(self) -> None:
        self._check_ranges()
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"MoVQ config: block_out_channels has {n} levels but down_block_types has "
                f"{len(self.down_block_types)} and up_block_types {len(self.up_block_types)}; they must match."
            )
        for key, values, allowed in (
            ("down_block_types", self.down_block_types, SUPPORTED_DOWN_BLOCKS),
            ("up_block_types", self.up_block_types, SUPPORTED_UP_BLOCKS),
        ):
            for v in values:
                if v not in allowed:
                    raise ValueError(
                        f"MoVQ config key {key!r} contains {v!r}; the Kandinsky MoVQ supports only {allowed}. "
                        "Is this config.json from a Kandinsky `movq` folder?"
                    )
        if self.norm_type != "spatial":
            raise ValueError(
                f"MoVQ config key 'norm_type' = {self.norm_type!r} is not supported; only 'spatial' (the MoVQ "
                "decoder whose norms are conditioned on the latent, used by every Kandinsky 2.x/3 `movq`) is. "
                "A 'group' VQModel is a plain VQ-GAN, not a Kandinsky MoVQ: check the model folder."
            )
        if self.act_fn not in ("silu", "swish"):
            raise ValueError(f"MoVQ config key 'act_fn' = {self.act_fn!r}; only 'silu' is supported.")
        if self.lookup_from_codebook:
            raise ValueError(
                "MoVQ config key 'lookup_from_codebook' = True is not supported: Kandinsky pipelines decode "
                "continuous latents (force_not_quantize=True), never codebook indices. Set it to false."
            )
        if self.vq_embed_dim != self.latent_channels:
            raise ValueError(
                f"MoVQ config: vq_embed_dim={self.vq_embed_dim} must equal latent_channels={self.latent_channels} "
                "(the spatial decoder conditions its norms on the latent); set vq_embed_dim to the same value."
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"MoVQ config: norm_num_groups={self.norm_num_groups} must divide every entry of "
                f"block_out_channels={self.block_out_channels}."
            )
        if any(c % SPATIAL_NORM_GROUPS for c in self.block_out_channels):
            raise ValueError(
                f"MoVQ config: every entry of block_out_channels={self.block_out_channels} must be a multiple of "
                f"{SPATIAL_NORM_GROUPS} (the decoder's SpatialNorm always uses {SPATIAL_NORM_GROUPS} groups)."
            )

    def _check_ranges(self) -> None:
        w = "MoVQ config"
        check_int_list(w, "block_out_channels", self.block_out_channels, 1, MAX_CHANNELS, MAX_LEVELS)
        for key in ("in_channels", "out_channels", "latent_channels", "vq_embed_dim"):
            check_int(w, key, getattr(self, key), 1, 64)
        check_int(w, "num_vq_embeddings", self.num_vq_embeddings, 1, MAX_CODEBOOK)
        check_int(w, "layers_per_block", self.layers_per_block, 1, MAX_LAYERS_PER_BLOCK)
        check_int(w, "norm_num_groups", self.norm_num_groups, 1, MAX_CHANNELS)
        check_float(w, "scaling_factor", self.scaling_factor, -1e6, 1e6)
        for key in ("mid_block_add_attention", "lookup_from_codebook", "force_upcast", "has_quantizer"):
            check_bool(w, key, getattr(self, key))

    @classmethod
    def from_dict(cls, d: dict, has_quantizer: bool = True) -> "MoVQConfig":
        """Read a diffusers VQModel config.json dict (keys starting with "_" and unused keys are ignored)."""
        values = {k: d.get(k, default) for k, default in _DIFFUSERS_DEFAULTS.items()}
        for key in ("block_out_channels", "down_block_types", "up_block_types"):
            if not isinstance(values[key], (list, tuple)):
                raise ValueError(f"MoVQ config: {key}={values[key]!r} must be a list (one entry per level).")
        if values["vq_embed_dim"] is None:  # diffusers: vq_embed_dim defaults to latent_channels
            values["vq_embed_dim"] = values["latent_channels"]
        for key in ("block_out_channels", "down_block_types", "up_block_types"):
            values[key] = tuple(values[key])
        if values["act_fn"] == "swish":  # diffusers maps both names to SiLU
            values["act_fn"] = "silu"
        ignored = sorted(k for k in d if not k.startswith("_") and k not in values)
        if ignored:
            logger.debug("MoVQ config: ignoring keys %s", ignored)
        return cls(**values, has_quantizer=has_quantizer)

    def to_diffusers_dict(self) -> dict[str, Any]:
        """The diffusers VQModel keyword arguments describing this config."""
        d = dataclasses.asdict(self)
        del d["has_quantizer"]
        for key in ("block_out_channels", "down_block_types", "up_block_types"):
            d[key] = list(d[key])
        return d

    @property
    def scale_factor(self) -> int:
        """Pixel size of one latent cell: 2 ** (levels - 1) (8 for the real MoVQ)."""
        return 2 ** (len(self.block_out_channels) - 1)


# Kandinsky 2.1 / 2.2 `movq` (67,832,495 parameters including the 16384 x 4 codebook).
K2_MOVQ = MoVQConfig()
# Kandinsky 3 `movq` (270,669,103 parameters). The original K3 MoVQ has no quantizer at all; if the
# checkpoint lacks `quantize.embedding.weight`, load it with dataclasses.replace(K3_MOVQ, has_quantizer=False).
K3_MOVQ = dataclasses.replace(K2_MOVQ, block_out_channels=(256, 512, 512, 1024))
