"""Helpers shared by the seed-parity tests: seeded generators, diffs, test images."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def gen(seed: int) -> torch.Generator:
    """The CPU generator a diffusers pipeline and our stages are both handed."""
    return torch.Generator("cpu").manual_seed(seed)


def max_diff(a, b) -> float:
    return float((torch.as_tensor(np.asarray(a)).float() - torch.as_tensor(np.asarray(b)).float()).abs().max())


def random_image(size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def as_comfy_image(pil: Image.Image) -> torch.Tensor:
    """PIL -> ComfyUI IMAGE (1, H, W, 3) in [0, 1]."""
    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0)[None]
