"""Depth estimation: images -> depth maps (near = bright), exactly as transformers' depth-estimation pipeline.

For each image: the 8-bit image (round(255 x), as every IMAGE -> PIL conversion in the pack) goes through the
model's own image processor and the model; `predicted_depth` is resized to the image size (bicubic) and
min-max scaled to 0..255 uint8 (the pipeline's `depth` image). The result, divided by 255 and repeated on three
channels, is what the Kandinsky 2.2 depth examples feed the ControlNet as its hint.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..components import DepthModel
from ..models.clip import comfy_to_pil
from ..runtime import Runtime
from .validation import check_pixels


@torch.no_grad()
def estimate_depth(depth_model: DepthModel, images: torch.Tensor, *, runtime: Runtime) -> torch.Tensor:
    """ComfyUI IMAGE (B, H, W, 3) in 0..1 -> depth maps (B, H, W, 3) in 0..1 (multiples of 1/255), on the CPU."""
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise ValueError(f"Depth estimation takes an IMAGE (B, H, W, 3), got a tensor of shape {tuple(images.shape)}.")
    check_pixels(images, "image")
    runtime.load(depth_model.modules())
    device = runtime.device()
    param = next(depth_model.model.parameters())
    maps = []
    for i, image in enumerate(comfy_to_pil(images[..., :3])):  # one at a time, as the pipeline runs them
        pixels = depth_model.image_processor(images=image, return_tensors="pt")["pixel_values"]
        predicted = depth_model.model(pixel_values=pixels.to(device, param.dtype)).predicted_depth  # 1, h, w
        depth = F.interpolate(predicted.float()[:, None], size=image.size[::-1], mode="bicubic",
                              align_corners=False)[0, 0].cpu().numpy()  # H, W
        span = depth.max() - depth.min()
        depth = (depth - depth.min()) / span if span > 0 else np.zeros_like(depth)  # a flat map: all far
        maps.append(torch.from_numpy((depth * 255).astype(np.uint8)).float() / 255)
        runtime.progress(i + 1, images.shape[0])
    return torch.stack(maps)[..., None].expand(-1, -1, -1, 3).contiguous()  # B, H, W -> B, H, W, 3
