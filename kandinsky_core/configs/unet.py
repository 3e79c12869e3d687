"""Kandinsky 2.1 / 2.2 decoder UNet configuration (diffusers `UNet2DConditionModel` config.json).

Field names mirror the diffusers config keys, so `dataclasses.asdict(config)` is a valid set of
`UNet2DConditionModel` keyword arguments. Only the subset of that class that the Kandinsky 2.x decoders
use is supported; anything else is rejected by `from_dict` with a message naming the key.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

from .checks import check_bool, check_float, check_int, check_int_list, check_optional_int

logger = logging.getLogger(__name__)

# Token counts of the image-embedding projections (diffusers class defaults, fixed by the weights).
IMAGE_TOKENS_21 = 10  # TextImageProjection (2.1): image embed -> 10 context tokens
IMAGE_TOKENS_22 = 32  # ImageProjection (2.2): image embed -> 32 context tokens
HINT_CHANNELS = 4  # channels the 2.2 depth hint encoder appends to the latent before conv_in
# Bounds of the config's sizes (configs/checks.py): several times the full models' (1536 channels, 3 layers).
MAX_LEVELS = 8
MAX_CHANNELS = 8192
MAX_LAYERS_PER_BLOCK = 16

SUPPORTED_DOWN_BLOCKS = ("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D")
SUPPORTED_UP_BLOCKS = ("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D")
SUPPORTED_MID_BLOCKS = ("UNetMidBlock2DSimpleCrossAttn",)
# (encoder_hid_dim_type, addition_embed_type) pairs: 2.2 text2img/inpaint, 2.2 depth, 2.1.
SUPPORTED_CONDITIONING = (("image_proj", "image"), ("image_proj", "image_hint"), ("text_image_proj", "text_image"))

# diffusers UNet2DConditionModel defaults for the keys we read (used when config.json omits them).
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "attention_head_dim": 8,
    "cross_attention_dim": 1280,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "addition_embed_type": None,
    "resnet_time_scale_shift": "default",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "time_embedding_dim": None,
    "mid_block_scale_factor": 1.0,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
}

# Keys that change the computation but that no Kandinsky 2.x checkpoint sets: only these values are
# supported (the first one is the diffusers default).
_FIXED_KEYS: dict[str, tuple] = {
    "class_embed_type": (None,),
    "num_class_embeds": (None,),
    "class_embeddings_concat": (False, None),
    "only_cross_attention": (False,),
    "mid_block_only_cross_attention": (None, False),
    "cross_attention_norm": (None,),
    "time_embedding_type": ("positional",),
    "time_embedding_act_fn": (None,),
    "timestep_post_act": (None,),
    "time_cond_proj_dim": (None,),
    "center_input_sample": (False,),
    "num_attention_heads": (None,),
    "attention_type": ("default",),
}


def _uniform(key: str, value: Any, n_blocks: int) -> Any:
    """Collapse a per-block list whose entries are all equal to one value; reject real per-block lists."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_blocks or len(set(value)) != 1:
            raise ValueError(
                f"UNet config key {key!r} = {list(value)}: per-block values are not supported by the Kandinsky "
                f"2.x UNet; give one value (or {n_blocks} equal values)."
            )
        return value[0]
    return value


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int  # latent channels in: 4 (text2img), 9 (inpaint: latent+masked latent+mask), 8 (depth: +hint)
    out_channels: int  # 8 = epsilon (4) + learned-variance value (4)
    block_out_channels: tuple[int, ...]  # channels per level, e.g. (384, 768, 1152, 1536)
    layers_per_block: int  # resnets per down level (up levels have one more)
    down_block_types: tuple[str, ...]  # ResnetDownsampleBlock2D / SimpleCrossAttnDownBlock2D per level
    mid_block_type: str  # UNetMidBlock2DSimpleCrossAttn
    up_block_types: tuple[str, ...]  # SimpleCrossAttnUpBlock2D / ResnetUpsampleBlock2D per level
    attention_head_dim: int  # per-head width of the added-KV attention (heads = channels / this)
    cross_attention_dim: int  # context token width (768); 2.1 also uses it for image and pooled text embeds
    encoder_hid_dim: int  # 2.2: image embed width (1280); 2.1: text token width (1024)
    encoder_hid_dim_type: str  # "image_proj" (2.2) or "text_image_proj" (2.1)
    addition_embed_type: str  # "image" / "image_hint" (2.2, depth) or "text_image" (2.1)
    resnet_time_scale_shift: str = "scale_shift"  # time embedding applied as GroupNorm scale and shift
    norm_num_groups: int = 32  # GroupNorm groups everywhere
    norm_eps: float = 1e-5  # GroupNorm eps of resnets and conv_norm_out (attention norms always use 1e-5)
    flip_sin_to_cos: bool = True  # timestep sinusoid order: cos half first
    freq_shift: float = 0  # sinusoid frequency divisor shift
    act_fn: str = "silu"  # activation everywhere
    conv_in_kernel: int = 3  # conv_in kernel size
    conv_out_kernel: int = 3  # conv_out kernel size
    time_embedding_dim: int | None = None  # time MLP width; None -> 4 * block_out_channels[0]
    mid_block_scale_factor: float = 1.0  # mid-block resnet outputs are divided by this
    resnet_out_scale_factor: float = 1.0  # other resnet outputs are divided by this
    resnet_skip_time_act: bool = False  # if True resnets project the time embedding without SiLU first

    def __post_init__(self) -> None:
        self._check_ranges()
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"UNet config: block_out_channels has {n} levels but down_block_types has "
                f"{len(self.down_block_types)} and up_block_types {len(self.up_block_types)}; they must match."
            )
        for key, values, allowed in (
            ("down_block_types", self.down_block_types, SUPPORTED_DOWN_BLOCKS),
            ("up_block_types", self.up_block_types, SUPPORTED_UP_BLOCKS),
            ("mid_block_type", (self.mid_block_type,), SUPPORTED_MID_BLOCKS),
        ):
            for v in values:
                if v not in allowed:
                    raise ValueError(
                        f"UNet config key {key!r} contains {v!r}; the Kandinsky 2.x UNet supports only {allowed}. "
                        "This config.json is not a Kandinsky 2.1/2.2 decoder UNet."
                    )
        pair = (self.encoder_hid_dim_type, self.addition_embed_type)
        if pair not in SUPPORTED_CONDITIONING:
            raise ValueError(
                f"UNet config: encoder_hid_dim_type={self.encoder_hid_dim_type!r} with addition_embed_type="
                f"{self.addition_embed_type!r} is not supported; supported pairs are {SUPPORTED_CONDITIONING} "
                "(Kandinsky 2.2, 2.2 depth ControlNet, 2.1)."
            )
        if self.encoder_hid_dim is None:
            raise ValueError(f"UNet config: encoder_hid_dim is required with encoder_hid_dim_type={pair[0]!r}.")
        if self.resnet_time_scale_shift != "scale_shift":
            raise ValueError(
                f"UNet config key 'resnet_time_scale_shift' = {self.resnet_time_scale_shift!r}; only 'scale_shift' "
                "(what every Kandinsky 2.x UNet uses) is supported."
            )
        if self.act_fn not in ("silu", "swish"):
            raise ValueError(f"UNet config key 'act_fn' = {self.act_fn!r}; only 'silu' is supported.")
        if self.norm_num_groups is None or any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"UNet config: norm_num_groups={self.norm_num_groups} must be set and divide every entry of "
                f"block_out_channels={self.block_out_channels}."
            )
        if any(c % self.attention_head_dim for c in self.block_out_channels[1:]):
            raise ValueError(
                f"UNet config: attention_head_dim={self.attention_head_dim} must divide the channels of every "
                f"attention level {self.block_out_channels[1:]}."
            )
        for key in ("conv_in_kernel", "conv_out_kernel"):
            if getattr(self, key) % 2 != 1:
                raise ValueError(f"UNet config key {key!r} = {getattr(self, key)}; only odd kernel sizes work.")

    def _check_ranges(self) -> None:
        """Every size within generous bounds (the full 2.2 UNet: 4 levels of at most 1536 channels, 3 layers)."""
        w = "UNet config"
        check_int_list(w, "block_out_channels", self.block_out_channels, 1, MAX_CHANNELS, MAX_LEVELS)
        for key in ("in_channels", "out_channels"):
            check_int(w, key, getattr(self, key), 1, 64)
        check_int(w, "layers_per_block", self.layers_per_block, 1, MAX_LAYERS_PER_BLOCK)
        check_int(w, "attention_head_dim", self.attention_head_dim, 1, MAX_CHANNELS)
        check_int(w, "cross_attention_dim", self.cross_attention_dim, 1, MAX_CHANNELS)
        if self.encoder_hid_dim is not None:
            check_int(w, "encoder_hid_dim", self.encoder_hid_dim, 1, MAX_CHANNELS)
        check_int(w, "norm_num_groups", self.norm_num_groups, 1, MAX_CHANNELS)
        check_float(w, "norm_eps", self.norm_eps, 0.0, 1.0, low_open=True)
        check_float(w, "freq_shift", self.freq_shift, -100.0, 100.0)
        for key in ("conv_in_kernel", "conv_out_kernel"):
            check_int(w, key, getattr(self, key), 1, 7)
        check_optional_int(w, "time_embedding_dim", self.time_embedding_dim, 1, 4 * MAX_CHANNELS)
        for key in ("mid_block_scale_factor", "resnet_out_scale_factor"):
            check_float(w, key, getattr(self, key), 0.0, 1000.0, low_open=True)
        for key in ("flip_sin_to_cos", "resnet_skip_time_act"):
            check_bool(w, key, getattr(self, key))

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        """Read a diffusers UNet2DConditionModel config.json dict (unused keys are ignored)."""
        for key, allowed in _FIXED_KEYS.items():
            value = d.get(key, allowed[0])
            if value not in allowed:
                raise ValueError(
                    f"UNet config key {key!r} = {value!r} is not supported by the Kandinsky 2.x UNet (supported: "
                    f"{allowed[0]!r}). Kandinsky 2.1/2.2 checkpoints never set it; is this the right model folder?"
                )
        values = {k: d.get(k, default) for k, default in _DIFFUSERS_DEFAULTS.items()}
        check_int_list("UNet config", "block_out_channels", values["block_out_channels"], 1, MAX_CHANNELS, MAX_LEVELS)
        n = len(values["block_out_channels"])
        for key in ("layers_per_block", "attention_head_dim", "cross_attention_dim"):
            values[key] = _uniform(key, values[key], n)
        for key in ("block_out_channels", "down_block_types", "up_block_types"):
            values[key] = tuple(values[key])
        if values["act_fn"] == "swish":  # diffusers maps both names to SiLU
            values["act_fn"] = "silu"
        return cls(**values)

    @property
    def time_embed_dim(self) -> int:
        """Width of the time embedding fed to every resnet (1536 for the full models)."""
        return self.time_embedding_dim or 4 * self.block_out_channels[0]

    @property
    def variant(self) -> "UNetVariant":
        """What this config describes (from the config alone; `detect_unet_variant` also checks weights)."""
        return _config_row(self).variant(self)


_DOWN = ("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3
_UP = ("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",)
_FULL = dict(
    out_channels=8,
    block_out_channels=(384, 768, 1152, 1536),
    layers_per_block=3,
    down_block_types=_DOWN,
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    up_block_types=_UP,
    attention_head_dim=64,
    cross_attention_dim=768,
)
K22_DECODER = UNetConfig(
    in_channels=4, encoder_hid_dim=1280, encoder_hid_dim_type="image_proj", addition_embed_type="image", **_FULL
)
K22_INPAINT = dataclasses.replace(K22_DECODER, in_channels=9)
K22_CONTROLNET_DEPTH = dataclasses.replace(K22_DECODER, in_channels=8, addition_embed_type="image_hint")
K21_DECODER = UNetConfig(
    in_channels=4,
    encoder_hid_dim=1024,
    encoder_hid_dim_type="text_image_proj",
    addition_embed_type="text_image",
    **_FULL,
)
K21_INPAINT = dataclasses.replace(K21_DECODER, in_channels=9)


# ----------------------------------------------------------------------------------------------------
# Variant detection: a table of (config, required tensor shapes, forbidden tensors) per variant.


@dataclass(frozen=True)
class UNetVariant:
    version: str  # "2.1" or "2.2"
    task: str  # "text2img", "inpaint" or "depth"
    image_embed_dim: int  # width of the CLIP image embedding the UNet expects (2.1: 768, 2.2: 1280)
    text_embed_dim: int | None  # 2.1: pooled M-CLIP text embedding width (768); None for 2.2
    text_hidden_dim: int | None  # 2.1: M-CLIP token width (1024); None for 2.2

    @property
    def name(self) -> str:
        return f"Kandinsky {self.version} {self.task} UNet"


def _common(c: UNetConfig) -> dict[str, tuple]:
    c0, k_in, k_out = c.block_out_channels[0], c.conv_in_kernel, c.conv_out_kernel
    return {
        "conv_in.weight": (c0, c.in_channels, k_in, k_in),
        "conv_out.weight": (c.out_channels, c0, k_out, k_out),
        "time_embedding.linear_1.weight": (c.time_embed_dim, c0),
    }


def _k22(c: UNetConfig) -> dict[str, tuple]:
    x, t = c.cross_attention_dim, c.time_embed_dim
    return {
        "encoder_hid_proj.image_embeds.weight": (IMAGE_TOKENS_22 * x, c.encoder_hid_dim),
        "encoder_hid_proj.norm.weight": (x,),
        "add_embedding.image_proj.weight": (t, c.encoder_hid_dim),
        "add_embedding.image_norm.weight": (t,),
    }


def _k22_hint(c: UNetConfig) -> dict[str, tuple]:
    return {
        **_k22(c),
        "add_embedding.input_hint_block.0.weight": (16, 3, 3, 3),
        "add_embedding.input_hint_block.14.weight": (HINT_CHANNELS, 256, 3, 3),
    }


def _k21(c: UNetConfig) -> dict[str, tuple]:
    x, t = c.cross_attention_dim, c.time_embed_dim
    return {
        "encoder_hid_proj.image_embeds.weight": (IMAGE_TOKENS_21 * x, x),
        "encoder_hid_proj.text_proj.weight": (x, c.encoder_hid_dim),
        "add_embedding.text_proj.weight": (t, x),
        "add_embedding.text_norm.weight": (t,),
        "add_embedding.image_proj.weight": (t, x),
    }


_HINT = "add_embedding.input_hint_block."
_TEXT = ("encoder_hid_proj.text_proj.", "add_embedding.text_proj.", "add_embedding.text_norm.")
_K22_ONLY = ("encoder_hid_proj.norm.", "add_embedding.image_norm.")


@dataclass(frozen=True)
class _VariantRow:
    version: str
    task: str
    encoder_hid_dim_type: str
    addition_embed_type: str
    in_channels: int  # latent channels the task feeds to conv_in
    required: Callable[[UNetConfig], dict[str, tuple]]  # tensors (and shapes) this variant must have
    forbidden: tuple[str, ...]  # key prefixes this variant must not have

    def variant(self, c: UNetConfig) -> UNetVariant:
        if self.version == "2.1":
            return UNetVariant("2.1", self.task, c.cross_attention_dim, c.cross_attention_dim, c.encoder_hid_dim)
        return UNetVariant("2.2", self.task, c.encoder_hid_dim, None, None)


VARIANT_TABLE: tuple[_VariantRow, ...] = (
    _VariantRow("2.2", "text2img", "image_proj", "image", 4, _k22, _TEXT + (_HINT,)),
    _VariantRow("2.2", "inpaint", "image_proj", "image", 9, _k22, _TEXT + (_HINT,)),
    _VariantRow("2.2", "depth", "image_proj", "image_hint", 4 + HINT_CHANNELS, _k22_hint, _TEXT),
    _VariantRow("2.1", "text2img", "text_image_proj", "text_image", 4, _k21, _K22_ONLY + (_HINT,)),
    _VariantRow("2.1", "inpaint", "text_image_proj", "text_image", 9, _k21, _K22_ONLY + (_HINT,)),
)


def _config_row(c: UNetConfig) -> _VariantRow:
    for row in VARIANT_TABLE:
        if (row.encoder_hid_dim_type, row.addition_embed_type, row.in_channels) == (
            c.encoder_hid_dim_type,
            c.addition_embed_type,
            c.in_channels,
        ):
            return row
    known = ", ".join(
        f"{r.version} {r.task}: in_channels={r.in_channels}, {r.encoder_hid_dim_type}/{r.addition_embed_type}"
        for r in VARIANT_TABLE
    )
    raise ValueError(
        f"UNet config with in_channels={c.in_channels}, encoder_hid_dim_type={c.encoder_hid_dim_type!r}, "
        f"addition_embed_type={c.addition_embed_type!r} matches no Kandinsky 2.x UNet variant ({known})."
    )


def _guess_from_weights(shapes: dict[str, tuple[int, ...]]) -> str:
    """Human description of what the weights look like, for error messages."""
    version = "2.1" if "encoder_hid_proj.text_proj.weight" in shapes else "2.2"
    if any(k.startswith(_HINT) for k in shapes):
        task = "depth ControlNet"
    else:
        in_ch = shapes.get("conv_in.weight", (0, 0))[1]
        task = {4: "text2img", 9: "inpaint"}.get(in_ch, f"{in_ch}-channel")
    return f"the weights look like a Kandinsky {version} {task} UNet"


def detect_unet_variant(config: UNetConfig, shapes: dict[str, tuple[int, ...]]) -> UNetVariant:
    """Identify the UNet variant from its config and check that the state-dict tensor shapes agree.

    `shapes` maps state-dict keys to tensor shapes (e.g. read from safetensors headers).
    Raises ValueError naming the first disagreement.
    """
    row = _config_row(config)
    variant = row.variant(config)
    required = {**_common(config), **row.required(config)}
    for key, expected in required.items():
        got = shapes.get(key)
        if got is None:
            raise ValueError(
                f"config.json describes a {variant.name} but the weights lack {key!r} (expected shape {expected}); "
                f"{_guess_from_weights(shapes)}. Check that config.json and the weight file come from the same repo."
            )
        if tuple(got) != tuple(expected):
            raise ValueError(
                f"config.json describes a {variant.name} but weight {key!r} has shape {tuple(got)}, expected "
                f"{expected}; {_guess_from_weights(shapes)}. Check that config.json and the weight file match."
            )
    for prefix in row.forbidden:
        extra = next((k for k in shapes if k.startswith(prefix)), None)
        if extra is not None:
            raise ValueError(
                f"config.json describes a {variant.name} but the weights contain {extra!r}, which that variant "
                f"does not have; {_guess_from_weights(shapes)}. Check that config.json and the weights match."
            )
    logger.debug("detected %s", variant.name)
    return variant
