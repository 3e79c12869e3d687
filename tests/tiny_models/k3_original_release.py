"""A tiny original ai-forever Kandinsky 3.1 release folder, built offline without the original code.

Tensor names and shapes come from `k3_original_layout.json` (written from the original classes, see its
`_about`); values are seeded random. `weights/` gets the three UNet pickles ({"unet", "null_embedding"}), their
projections, `movq.pt` and a tiny transformers T5 encoder + tokenizer as `flan_ul2_encoder/` (sharded .bin,
as released). When the original code is available, tests/test_k3_original.py checks the layout file against it.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

LAYOUT = Path(__file__).with_name("k3_original_layout.json")
KINDS = {"base": 4, "inpainting": 9, "flash": 4}


def _random(layout: list, seed: int, in_channels: int | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout:
        if key == "in_layer.weight" and in_channels is not None:
            shape = [shape[0], in_channels, *shape[2:]]
        out[key] = torch.randn(shape, generator=g) * 0.15
    return out


def build_original_release(path: str | Path, name: str = "Kandinsky3.1") -> Path:
    from tiny_models.k3 import TINY_T5, make_t5_tokenizer
    from transformers import T5Config, T5EncoderModel

    from kandinsky_core.loading.originals import UNET_FILES

    layout = json.loads(LAYOUT.read_text())
    folder = Path(path) / name
    weights = folder / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    context = dict(layout["projection"])["1.weight"][0]
    for i, (kind, channels) in enumerate(KINDS.items()):
        unet_file, projection_file = UNET_FILES[kind]
        null = torch.randn(context, generator=torch.Generator().manual_seed(40 + i))
        torch.save({"unet": _random(layout["unet"], 10 + i, channels), "null_embedding": null}, weights / unet_file)
        torch.save(_random(layout["projection"], 20 + i), weights / projection_file)
    torch.save(_random(layout["movq"], 30), weights / "movq.pt")
    torch.manual_seed(0)
    encoder = T5EncoderModel(T5Config(**TINY_T5)).eval()
    encoder.save_pretrained(weights / "flan_ul2_encoder", safe_serialization=False, max_shard_size="20KB")
    make_t5_tokenizer(weights / "flan_ul2_encoder")
    return folder
