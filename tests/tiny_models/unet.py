"""Tiny diffusers reference UNets for Kandinsky 2.x tests (diffusers' dummy configs, spec §5.1)."""
from __future__ import annotations

import os

import torch

UNET_KINDS = ("22", "22_inpaint", "22_depth", "21", "21_inpaint")


def unet_config_dict(kind: str) -> dict:
    """diffusers UNet2DConditionModel kwargs of the dummy Kandinsky UNet `kind` (one of UNET_KINDS)."""
    if kind not in UNET_KINDS:
        raise ValueError(f"unknown tiny UNet kind {kind!r}; expected one of {UNET_KINDS}")
    common = {
        "out_channels": 8,
        "down_block_types": ("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        "up_block_types": ("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "encoder_hid_dim": 32,
        "attention_head_dim": 4,
        "resnet_time_scale_shift": "scale_shift",
        "class_embed_type": None,
    }
    if kind.startswith("21"):
        return {
            **common,
            "in_channels": 9 if kind == "21_inpaint" else 4,
            "addition_embed_type": "text_image",
            "encoder_hid_dim_type": "text_image_proj",
            "cross_attention_dim": 32,
        }
    return {
        **common,
        "in_channels": {"22": 4, "22_inpaint": 9, "22_depth": 8}[kind],
        "addition_embed_type": "image_hint" if kind == "22_depth" else "image",
        "encoder_hid_dim_type": "image_proj",
        "cross_attention_dim": 100 if kind == "22_depth" else 32,
    }


def build_reference_unet(kind: str, path: str | os.PathLike):
    """Build the dummy UNet after torch.manual_seed(0), save it to `path`, return it reloaded in eval mode."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    UNet2DConditionModel(**unet_config_dict(kind)).save_pretrained(path)
    return UNet2DConditionModel.from_pretrained(path).eval()
