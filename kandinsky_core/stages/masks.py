"""Inpainting masks: ComfyUI MASK (1 = repaint) to the 2.x inpaint UNet's latent keep-mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import check_pixels


def invert_mask(mask: torch.Tensor) -> torch.Tensor:
    """Swap repaint and keep (for masks drawn in the old Kandinsky convention, black = repaint)."""
    check_pixels(mask, "mask")
    return 1.0 - mask


def as_mask_batch(mask: torch.Tensor) -> torch.Tensor:
    """MASK (H, W) / (B, H, W) / (B, 1, H, W) -> (B, 1, H, W) float."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"A mask must be (H, W), (B, H, W) or (B, 1, H, W), got {tuple(mask.shape)}.")
    return mask.float()


def erode_keep_region(keep: torch.Tensor) -> torch.Tensor:
    """Shrink the keep region by one pixel towards 6 neighbours, exactly like diffusers' prepare_mask.

    Every position that is not kept clears (-1,0), (0,-1), (-1,-1), (+1,0), (0,+1), (+1,+1) around it.
    keep: B, 1, h, w with values 0/1.
    """
    drop = (keep != 1).float()
    padded = F.pad(drop, (1, 1, 1, 1))  # B, 1, h+2, w+2
    h, w = keep.shape[-2:]
    cleared = torch.zeros_like(drop)
    # a position p is cleared when p + offset is a dropped position, offset in the mirrored set
    for di, dj in ((1, 0), (0, 1), (1, 1), (-1, 0), (0, -1), (-1, -1)):
        cleared = torch.maximum(cleared, padded[..., 1 + di : 1 + di + h, 1 + dj : 1 + dj + w])
    return keep * (1.0 - cleared)


def latent_keep_mask(mask: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """ComfyUI MASK (1 = repaint, any size) -> eroded keep-mask (B, 1, h, w) at latent size (spec §4.8)."""
    mask = as_mask_batch(mask)
    check_pixels(mask, "inpainting mask (noise_mask)")
    binary = (mask >= 0.5).float()
    keep = 1.0 - binary
    keep = F.interpolate(keep, size=latent_size, mode="nearest")
    return erode_keep_region(keep)


def blank_repaint_area(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IMAGE (B, H, W, 3) with every pixel the mask touches (1 = repaint, > 0 counts) set to mid-grey (0 in
    the MoVQ's [-1, 1]): the masked image the original Kandinsky 3.1 inpainting pipeline encodes."""
    mask = as_mask_batch(mask.to(image.device))
    if tuple(mask.shape[-2:]) != tuple(image.shape[1:3]):
        mask = F.interpolate(mask, size=tuple(image.shape[1:3]), mode="bilinear", align_corners=False)
    repaint = (mask[:, 0, :, :, None] > 0).expand(image.shape[0], -1, -1, image.shape[-1])  # B, H, W, C
    return image.masked_fill(repaint, 0.5)
