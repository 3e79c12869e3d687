"""diffusers' tiny MoVQ test configs (spec §5.1) and reference builders.

kind "2level": the MoVQ of the 2.1 / 2.2 t2i, img2img, inpaint and K3 pipeline tests (scale factor 2).
kind "4level": the MoVQ of both 2.2 ControlNet tests (scale factor 8, matching the hint encoder).
"""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file

_COMMON = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "vq_embed_dim": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "norm_type": "spatial",
    "num_vq_embeddings": 12,
}
KINDS = ("2level", "4level")


def movq_config(kind: str) -> dict:
    """diffusers VQModel kwargs of the tiny MoVQ `kind` ("2level" or "4level")."""
    if kind == "2level":
        return {
            **_COMMON,
            "block_out_channels": [32, 64],
            "down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
            "up_block_types": ["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        }
    if kind == "4level":
        return {
            **_COMMON,
            "block_out_channels": [32, 32, 64, 64],
            "down_block_types": ["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
            "up_block_types": ["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        }
    raise ValueError(f"unknown tiny MoVQ kind {kind!r}; expected one of {KINDS}")


def build_reference_movq(kind: str, path: str | os.PathLike):
    """Build the tiny diffusers VQModel after torch.manual_seed(0), save it to `path`, load it back (eval)."""
    from diffusers import VQModel

    torch.manual_seed(0)
    VQModel(**movq_config(kind)).save_pretrained(path)
    return VQModel.from_pretrained(path).eval()


def load_native_movq(path: str | os.PathLike):
    """Our MoVQ from a folder written by `build_reference_movq` (config.json + safetensors, strict)."""
    from kandinsky_core.configs.movq import MoVQConfig
    from kandinsky_core.models.movq import MoVQ

    with open(os.path.join(path, "config.json")) as f:
        config = MoVQConfig.from_dict(json.load(f))
    model = MoVQ(config)
    model.load_state_dict(load_file(os.path.join(path, "diffusion_pytorch_model.safetensors")), strict=True)
    return model.eval()
