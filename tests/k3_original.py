"""The original ai-forever Kandinsky 3 code as a test oracle, and tiny models in the original release layout.

`import_original()` imports the checkout named by KANDINSKY3_ORIGINAL_PATH without running its package
`__init__` (which downloads from the Hub); the modules we use need einops, omegaconf, scipy and
scikit-image. torchvision (used only for PIL conversion in the pipelines) is replaced by a small stand-in
when it is not installed. Tests call `original_or_skip()`, which skips with the reason when anything is missing.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

ENV = "KANDINSKY3_ORIGINAL_PATH"
NEEDED = ("einops", "omegaconf", "scipy", "skimage")

# Tiny original UNet: the real code hard-codes GroupNorm(32) widths and 64-wide heads, so the widths are
# the smallest that keep both (4 levels as in the release, so every attention slot is exercised).
TINY_UNET = dict(
    model_channels=64, init_channels=32, time_embed_dim=64, context_dim=64, groups=32, head_dim=64,
    expansion_ratio=4, compression_ratio=2, dim_mult=(1, 2, 2, 2), num_blocks=(2, 2, 2, 2),
    add_cross_attention=(False, True, True, True), add_self_attention=(False, True, True, True),
)
TINY_TEXT_WIDTH = 32  # T5 d_model of the tiny encoder the projection reads
# Tiny MoVQ: 4 levels (factor 8, as the release) of 32 channels, attention on the lowest level only
TINY_MOVQ = dict(double_z=False, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1, 1, 1],
                 num_res_blocks=1, attn_resolutions=[8], dropout=0.0)


def _torchvision_stand_in() -> None:
    """`torchvision.transforms.ToTensor/ToPILImage` as the pipelines use them (tensors stay tensors)."""
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")

    class ToTensor:
        def __call__(self, pic):  # HWC or HW -> CHW; 8-bit input scaled to 0..1, float input kept
            arr = np.asarray(pic)
            x = torch.from_numpy(np.ascontiguousarray(arr[..., None] if arr.ndim == 2 else arr)).permute(2, 0, 1)
            return x.float() / 255.0 if arr.dtype == np.uint8 else x

    class ToPILImage:
        def __call__(self, x):
            return x

    transforms.ToTensor, transforms.ToPILImage = ToTensor, ToPILImage
    tv.transforms = transforms
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, transforms


def import_original():
    """The original package's modules (namespace without the Hub-downloading __init__)."""
    root = Path(os.environ[ENV]).resolve() / "kandinsky3"
    if "kandinsky3" not in sys.modules:
        pkg = types.ModuleType("kandinsky3")
        pkg.__path__ = [str(root)]
        sys.modules["kandinsky3"] = pkg
    import transformers  # noqa: F401  (imported before any stand-in, which it must not take for torchvision)

    stand_in = importlib.util.find_spec("torchvision") is None
    if stand_in:
        _torchvision_stand_in()
    try:
        names = ("model.unet", "model.diffusion", "movq", "t2i_pipeline", "inpainting_pipeline")
        return types.SimpleNamespace(**{n.split(".")[-1]: importlib.import_module(f"kandinsky3.{n}") for n in names})
    finally:
        if stand_in:  # diffusers and transformers probe for torchvision later: leave no trace
            del sys.modules["torchvision"], sys.modules["torchvision.transforms"]


def original_or_skip():
    if not os.environ.get(ENV):
        pytest.skip(f"{ENV} is not set (point it at a checkout of ai-forever/Kandinsky-3 to compare with the original)")
    if not (Path(os.environ[ENV]) / "kandinsky3" / "model" / "unet.py").is_file():
        pytest.skip(f"{ENV}={os.environ[ENV]} is not a checkout of ai-forever/Kandinsky-3 (no kandinsky3/model/unet.py)")
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the original Kandinsky 3 code needs {', '.join(missing)} (pip install {' '.join(missing)})")
    return import_original()


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere (the original zero-initialises its conditional norms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.15)
    return module.eval()


def tiny_original_unet(orig, in_channels: int = 4, seed: int = 0):
    return randomize(orig.unet.UNet(num_channels=in_channels, **TINY_UNET), seed)


def tiny_projection(seed: int = 1) -> torch.nn.Sequential:
    proj = torch.nn.Sequential(torch.nn.Linear(TINY_TEXT_WIDTH, TINY_UNET["context_dim"], bias=False),
                               torch.nn.LayerNorm(TINY_UNET["context_dim"]))
    return randomize(proj, seed)


def tiny_original_movq(orig, seed: int = 2):
    return randomize(orig.movq.MoVQ(TINY_MOVQ), seed)


def save_release(folder: Path, unets: dict, projections: dict, movq, null_embeddings: dict) -> Path:
    """Write `folder/weights/` as the original release does (torch.save pickles)."""
    from kandinsky_core.loading.originals import UNET_FILES

    weights = folder / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    for kind, unet in unets.items():
        unet_file, projection_file = UNET_FILES[kind]
        torch.save({"unet": unet.state_dict(), "null_embedding": null_embeddings[kind]}, weights / unet_file)
        torch.save(projections[kind].state_dict(), weights / projection_file)
    if movq is not None:
        torch.save(movq.state_dict(), weights / "movq.pt")
    return folder
