"""Kandinsky 3 UNet configuration (diffusers `Kandinsky3UNet` config.json, spec §1.8).

Field names mirror the diffusers config keys. diffusers' class has no `out_channels` (it outputs as many
channels as it takes); the field exists here for the original 3.1 inpainting UNet (9 in, 4 out) and
defaults to `in_channels`. Structural constants the class hard-codes (attention FFN expansion 4, ResNet
bottleneck compression 2, no attention on level 0) are module constants of `models/unet3.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_CHANNELS = 16384  # sanity bounds: far above any real checkpoint, far below what would exhaust memory
MAX_LEVELS = 4  # diffusers builds at most 4 levels (its per-level attention table has 4 entries)
MAX_LAYERS_PER_BLOCK = 16
MAX_IN_CHANNELS = 64

_DEFAULTS: dict[str, Any] = {  # diffusers Kandinsky3UNet.__init__ defaults = the released kandinsky-3 config
    "in_channels": 4,
    "time_embedding_dim": 1536,
    "groups": 32,
    "attention_head_dim": 64,
    "layers_per_block": 3,
    "block_out_channels": (384, 768, 1536, 3072),
    "cross_attention_dim": 4096,
    "encoder_hid_dim": 4096,
}


def _positive_int(key: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(
            f"Kandinsky 3 UNet config key {key!r} = {value!r}: expected an integer from 1 to {maximum}. "
            "The config.json is corrupt or not a Kandinsky 3 UNet config."
        )
    return value


def _single(key: str, value: Any) -> Any:
    """diffusers types some keys as int-or-tuple but only ever uses one value; accept equal lists."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0 or len(set(value)) != 1:
            raise ValueError(f"Kandinsky 3 UNet config key {key!r} = {list(value)}: per-level values are not supported.")
        return value[0]
    return value


@dataclass(frozen=True)
class UNet3Config:
    in_channels: int = 4  # latent channels in (4; the original 3.1 inpainting UNet takes 9)
    time_embedding_dim: int = 1536  # width of the time embedding that conditions every GroupNorm
    groups: int = 32  # GroupNorm groups everywhere
    attention_head_dim: int = 64  # per-head width of every attention (heads = width / this)
    layers_per_block: int = 3  # ResNet-attention-ResNet triples per level
    block_out_channels: tuple[int, ...] = (384, 768, 1536, 3072)  # output channels per level
    cross_attention_dim: int = 4096  # width the text context is projected to (and the pooling query width)
    encoder_hid_dim: int = 4096  # width of the text encoder's hidden states (Flan-UL2: 4096)
    out_channels: int | None = None  # predicted channels; None -> in_channels (diffusers' behaviour)

    def __post_init__(self) -> None:
        for key, maximum in (
            ("in_channels", MAX_IN_CHANNELS),
            ("time_embedding_dim", MAX_CHANNELS),
            ("groups", MAX_CHANNELS),
            ("attention_head_dim", MAX_CHANNELS),
            ("layers_per_block", MAX_LAYERS_PER_BLOCK),
            ("cross_attention_dim", MAX_CHANNELS),
            ("encoder_hid_dim", MAX_CHANNELS),
        ):
            _positive_int(key, getattr(self, key), maximum)
        if self.out_channels is not None:
            _positive_int("out_channels", self.out_channels, MAX_IN_CHANNELS)
        levels = self.block_out_channels
        if not isinstance(levels, tuple) or not 1 <= len(levels) <= MAX_LEVELS:
            raise ValueError(
                f"Kandinsky 3 UNet config: block_out_channels = {levels!r} must list 1 to {MAX_LEVELS} widths."
            )
        for c in levels:
            _positive_int("block_out_channels", c, MAX_CHANNELS)
        widths = (self.init_channels,) + levels
        if self.init_channels < 1 or any(c % self.groups for c in widths):
            raise ValueError(
                f"Kandinsky 3 UNet config: groups = {self.groups} must divide every width {widths} "
                "(block_out_channels and their first entry halved)."
            )
        attention_widths = levels[1:]
        if any(c % self.attention_head_dim for c in attention_widths) or (
            self.time_embedding_dim % self.attention_head_dim
        ):
            raise ValueError(
                f"Kandinsky 3 UNet config: attention_head_dim = {self.attention_head_dim} must divide the attention "
                f"widths {attention_widths} and time_embedding_dim = {self.time_embedding_dim}."
            )

    @classmethod
    def from_dict(cls, d: dict) -> "UNet3Config":
        """Read a diffusers Kandinsky3UNet config.json dict (diffusers' defaults for absent keys)."""
        class_name = d.get("_class_name", "Kandinsky3UNet")
        if class_name != "Kandinsky3UNet":
            raise ValueError(
                f"The UNet config.json names the class {class_name!r}, not Kandinsky3UNet: this is not a "
                "Kandinsky 3 UNet folder."
            )
        values = {k: d.get(k, default) for k, default in _DEFAULTS.items()}
        for key in ("layers_per_block", "cross_attention_dim"):
            values[key] = _single(key, values[key])
        blocks = values["block_out_channels"]
        if not isinstance(blocks, (list, tuple)):
            raise ValueError(f"Kandinsky 3 UNet config: block_out_channels = {blocks!r} must be a list of widths.")
        values["block_out_channels"] = tuple(blocks)
        return cls(**values, out_channels=d.get("out_channels"))

    @property
    def init_channels(self) -> int:
        """Width after conv_in (half the first level's width, 192 for the full model)."""
        return self.block_out_channels[0] // 2

    @property
    def output_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels


@dataclass(frozen=True)
class UNet3Variant:
    """What a Kandinsky 3 UNet is, in the shape the decoder bundle carries for every version."""

    task: str = "text2img"  # "text2img" (4 latent channels in) or "inpaint" (the 3.1 inpainting UNet)
    text_hidden_dim: int = 4096  # width of the text-encoder states the UNet reads (encoder_hid_dim)
    version: str = "3"
    image_embed_dim: None = None  # no CLIP image embedding (2.x variants carry its width here)

    @property
    def name(self) -> str:
        return f"Kandinsky {self.version} {self.task} UNet"


def detect_unet3_variant(config: UNet3Config) -> UNet3Variant:
    """The Kandinsky 3 variant a UNet config describes (4 input channels: text2img; 9: inpainting)."""
    tasks = {4: "text2img", 9: "inpaint"}
    if config.in_channels not in tasks or config.output_channels != 4:
        raise ValueError(
            f"Kandinsky 3 UNet config with in_channels={config.in_channels}, out_channels={config.output_channels} "
            "is neither the text-to-image UNet (4 in, 4 out) nor the 3.1 inpainting UNet (9 in, 4 out)."
        )
    return UNet3Variant(tasks[config.in_channels], config.encoder_hid_dim)


K3_UNET = UNet3Config()  # kandinsky-community/kandinsky-3/unet (the class defaults, spec §1.8)
