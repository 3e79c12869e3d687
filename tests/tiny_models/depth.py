"""Tiny random transformers depth-estimation models (DPT and Depth Anything), saved in their Hub layout.

Sizes follow transformers' own model tests; the image processors keep the real repos' options (DPT: fixed
size; Depth Anything V2: keep aspect ratio, multiple of 14).
"""
from __future__ import annotations

from pathlib import Path

import torch


def build_dpt(folder: Path) -> Path:
    """A tiny DPTForDepthEstimation (ViT backbone, like Intel/dpt-large) + DPTImageProcessor in `folder`."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=37, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
                       fusion_hidden_size=16, is_hybrid=False)
    DPTForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)
    return Path(folder)


def build_depth_anything(folder: Path) -> Path:
    """A tiny DepthAnythingForDepthEstimation (DINOv2 backbone, like Depth-Anything-V2-*-hf) + its processor."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                            intermediate_size=37, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                                 neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=16)
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(folder)
    return Path(folder)
