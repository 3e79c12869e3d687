"""Tensor names of the original ai-forever Kandinsky 3 / 3.1 release -> the diffusers names our modules use.

Pure functions over state dicts (no I/O), spec §2.4:
- the UNet (`kandinsky3/model/unet.py`: `in_layer`, `down_samples.{i}.resnet_attn_blocks.{n}.{0,1,2}`, ...)
  plus its separate text projection (an `nn.Sequential(Linear, LayerNorm)` saved as `0.weight`, `1.weight`,
  `1.bias`, optionally under a `t5.` prefix) -> diffusers `Kandinsky3UNet` (projection = `encoder_hid_proj`);
- the MoVQ (`kandinsky3/movq.py`, the taming-transformers layout with SpatialNorm and 1x1-conv attention,
  no quantizer) -> diffusers `VQModel` names.
The configs the original code hard-codes (GroupNorm 32 groups, 64-wide attention heads) are kept; every
width is read from the tensor shapes, so a shape the architecture cannot have is caught by the strict loader.
"""
from __future__ import annotations

import dataclasses
import re

import torch

from ..configs.movq import K3_MOVQ, MoVQConfig
from ..configs.unet3 import K3_UNET, UNet3Config

# UNet: whole dotted segments (never substrings) renamed wherever they occur
_UNET_SEGMENTS = {
    "down_samples": "down_blocks",
    "up_samples": "up_blocks",
    "feature_pooling": "add_time_condition",
    "in_layer": "conv_in",
    "to_query": "to_q",
    "to_key": "to_k",
    "to_value": "to_v",
    "output_layer": "to_out.0",
    "self_attention_block": "attentions.0",
}
_UNET_PREFIXES = {  # two-segment names at the top of the tree
    "to_time_embed.1.": "time_embedding.linear_1.",
    "to_time_embed.3.": "time_embedding.linear_2.",
    "out_layer.0.": "conv_norm_out.",
    "out_layer.2.": "conv_out.",
}
# resnet_attn_blocks.{n}.{0|1|2}: ResNet in, cross-attention (slot 0 is the self-attention), ResNet out
_TRIPLE = re.compile(r"(^|\.)resnet_attn_blocks\.(\d+)\.([012])\.")
_PROJECTION = {"0.weight": "projection_linear.weight", "1.weight": "projection_norm.weight",
               "1.bias": "projection_norm.bias"}
PROJECTION_PREFIX = "encoder_hid_proj."


def _triple(match: re.Match) -> str:
    n, part = int(match.group(2)), match.group(3)
    name = {"0": f"resnets_in.{n}", "1": f"attentions.{n + 1}", "2": f"resnets_out.{n}"}[part]
    return f"{match.group(1)}{name}."


def original_unet_key(key: str) -> str:
    """One original UNet tensor name -> its diffusers Kandinsky3UNet name."""
    for old, new in _UNET_PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old):]
    key = _TRIPLE.sub(_triple, key)
    return ".".join(_UNET_SEGMENTS.get(part, part) for part in key.split("."))


def projection_state_dict(projection: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original text projection (`0.weight`, `1.weight`, `1.bias`, maybe under `t5.`) -> encoder_hid_proj.*"""
    keys = set(projection)
    for prefix in ("", "t5."):
        wanted = {prefix + k for k in _PROJECTION}
        if keys == wanted:
            return {PROJECTION_PREFIX + new: projection[prefix + old] for old, new in _PROJECTION.items()}
    raise ValueError(
        f"The text projection holds {sorted(keys)[:6]}; expected exactly {sorted(_PROJECTION)} (a Linear + "
        "LayerNorm, as the original projection*.pt files): wrong file for the projection."
    )


def original_unet_to_diffusers(
    unet: dict[str, torch.Tensor], projection: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Original UNet state dict + its text projection -> one diffusers Kandinsky3UNet state dict (same tensors)."""
    converted = {original_unet_key(k): v for k, v in unet.items()}
    converted.update(projection_state_dict(projection))
    return converted


def _shape(sd: dict[str, torch.Tensor], key: str, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"{what}: tensor {key!r} is missing; this is not an original Kandinsky 3 {what} state dict.")
    return tuple(sd[key].shape)


def unet3_config_from_original(converted: dict[str, torch.Tensor]) -> UNet3Config:
    """Read the widths of a converted (diffusers-named) original UNet from its tensor shapes."""
    what = "UNet"
    init, in_channels = _shape(converted, "conv_in.weight", what)[:2]
    levels = sorted({int(k.split(".")[1]) for k in converted if k.startswith("down_blocks.")})
    widths = tuple(_shape(converted, f"down_blocks.{i}.resnets_out.0.resnet_blocks.3.projection.weight", what)[0]
                   for i in levels)
    layers = len({k.split(".")[3] for k in converted if k.startswith("down_blocks.0.resnets_in.")})
    context_dim = _shape(converted, "add_time_condition.attention.to_k.weight", what)[1]
    config = dataclasses.replace(
        K3_UNET,
        in_channels=in_channels,
        out_channels=_shape(converted, "conv_out.weight", what)[0],
        time_embedding_dim=_shape(converted, "time_embedding.linear_1.weight", what)[0],
        layers_per_block=layers,
        block_out_channels=widths,
        cross_attention_dim=context_dim,
        encoder_hid_dim=_shape(converted, PROJECTION_PREFIX + "projection_linear.weight", what)[1],
    )
    if config.init_channels != init:
        raise ValueError(
            f"UNet: conv_in has {init} channels but the first level is {widths[0]} wide (expected {widths[0] // 2}); "
            "this is not an original Kandinsky 3 UNet."
        )
    return config


# MoVQ (taming layout) -> diffusers VQModel
_MOVQ_RENAMES = (
    (re.compile(r"^(encoder|decoder)\.mid\.block_([12])\."), lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}."),
    (re.compile(r"^(encoder|decoder)\.mid\.attn_1\."), lambda m: f"{m[1]}.mid_block.attentions.0."),
    (re.compile(r"^encoder\.down\.(\d+)\.block\."), lambda m: f"encoder.down_blocks.{m[1]}.resnets."),
    (re.compile(r"^encoder\.down\.(\d+)\.attn\."), lambda m: f"encoder.down_blocks.{m[1]}.attentions."),
    (re.compile(r"^encoder\.down\.(\d+)\.downsample\."), lambda m: f"encoder.down_blocks.{m[1]}.downsamplers.0."),
    (re.compile(r"^(encoder|decoder)\.norm_out\."), lambda m: f"{m[1]}.conv_norm_out."),
)
_ATTENTION_PROJ = {"q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _decoder_level(key: str, levels: int) -> str:
    """decoder.up.{i} counts from the highest resolution; diffusers' up_blocks from the lowest."""
    m = re.match(r"^decoder\.up\.(\d+)\.(block|attn|upsample)\.", key)
    if not m:
        return key
    kind = {"block": "resnets.", "attn": "attentions.", "upsample": "upsamplers.0."}[m[2]]
    return f"decoder.up_blocks.{levels - 1 - int(m[1])}.{kind}" + key[m.end():]


def original_movq_to_diffusers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original K3 MoVQ state dict -> diffusers VQModel names (attention 1x1 convs become Linear weights)."""
    levels = len({k.split(".")[2] for k in sd if k.startswith("decoder.up.")})
    out = {}
    for key, value in sd.items():
        new = _decoder_level(key, levels)
        for pattern, repl in _MOVQ_RENAMES:
            new = pattern.sub(repl, new)
        parts = new.split(".")
        if "attentions" in parts:
            slot = parts.index("attentions") + 2  # ...attentions.{j}.<this>
            name = parts[slot]
            if name in _ATTENTION_PROJ:
                parts[slot] = _ATTENTION_PROJ[name]
                value = value.reshape(value.shape[0], -1) if value.dim() == 4 else value  # 1x1 conv -> Linear
            elif name == "norm":  # encoder: plain GroupNorm; decoder: SpatialNorm
                spatial = parts[0] == "decoder"
                parts[slot] = "spatial_norm" if spatial else "group_norm"
                if not spatial and parts[slot + 1] == "norm_layer":
                    del parts[slot + 1]
        new = ".".join(parts).replace(".nin_shortcut.", ".conv_shortcut.")
        if new.startswith("encoder."):  # encoder norms are plain GroupNorms inside a SpatialNorm shell
            new = new.replace(".norm_layer.", ".")
        out[new] = value
    return out


def movq_config_from_original(converted: dict[str, torch.Tensor]) -> MoVQConfig:
    """Widths and attention levels of a converted original MoVQ, read from its tensor shapes."""
    what = "MoVQ"
    levels = sorted({int(k.split(".")[2]) for k in converted if k.startswith("encoder.down_blocks.")})
    widths = tuple(_shape(converted, f"encoder.down_blocks.{i}.resnets.0.conv1.weight", what)[0] for i in levels)
    attn = [any(k.startswith(f"encoder.down_blocks.{i}.attentions.") for k in converted) for i in levels]
    up_attn = [any(k.startswith(f"decoder.up_blocks.{i}.attentions.") for k in converted) for i in levels]
    layers = len({k.split(".")[4] for k in converted if k.startswith("encoder.down_blocks.0.resnets.")})
    return dataclasses.replace(
        K3_MOVQ,
        in_channels=_shape(converted, "encoder.conv_in.weight", what)[1],
        out_channels=_shape(converted, "decoder.conv_out.weight", what)[0],
        latent_channels=_shape(converted, "quant_conv.weight", what)[0],
        vq_embed_dim=_shape(converted, "quant_conv.weight", what)[0],
        block_out_channels=widths,
        down_block_types=tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn),
        up_block_types=tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in up_attn),
        layers_per_block=layers,
        has_quantizer=False,
    )
