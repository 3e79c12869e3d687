"""Depth estimation nodes: equal to transformers' depth-estimation pipeline, and to the seeds' make_hint.

The seeds (diffusers' Kandinsky 2.2 depth examples) make the hint with
`pipeline("depth-estimation")(image)["depth"]` -> uint8 array / 255, three channels, (1, 3, H, W).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_models.depth import build_depth_anything, build_dpt

BUILDERS = {"dpt-hybrid-midas": build_dpt, "Depth-Anything-V2-Small-hf": build_depth_anything}


@pytest.fixture(scope="module")
def depth_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth-models")
    for name, build in BUILDERS.items():
        build(root / name)
    (root / "not-a-depth-model").mkdir()
    (root / "not-a-depth-model" / "config.json").write_text(json.dumps({"model_type": "clip",
                                                                         "architectures": ["CLIPModel"]}))
    return root


@pytest.fixture
def nodes(pack, depth_models, monkeypatch):
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", str(depth_models))
    monkeypatch.setenv("KANDINSKY_DEVICE", "cpu")
    return pack.NODE_CLASS_MAPPINGS


def comfy_image(seed: int, h: int, w: int, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, h, w, 3, generator=g)


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(torch.round(image.clamp(0, 1) * 255).to(torch.uint8).numpy())


def make_hint(image: Image.Image, depth_estimator) -> torch.Tensor:
    """The seeds' hint (diffusers' Kandinsky 2.2 ControlNet example), batch dimension added."""
    depth = np.array(depth_estimator(image)["depth"])[:, :, None]
    depth = np.concatenate([depth, depth, depth], axis=2)
    return (torch.from_numpy(depth).float() / 255.0).permute(2, 0, 1)[None]


def test_loader_lists_only_depth_model_folders(nodes):
    names = nodes["KandinskyDepthModelLoader"].INPUT_TYPES()["required"]["depth_model_name"][0]
    assert sorted(names) == sorted(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("size", [(40, 56), (64, 48)])
def test_estimate_equals_the_transformers_pipeline(nodes, depth_models, name, size):
    from transformers import pipeline

    (model,) = nodes["KandinskyDepthModelLoader"]().load(name)
    images = comfy_image(1, *size, batch=2)
    (depth,) = nodes["KandinskyDepthEstimate"]().estimate(model, images)
    assert depth.shape == (2, *size, 3)
    estimator = pipeline("depth-estimation", model=str(depth_models / name), device="cpu")
    for i in range(2):
        expected = torch.from_numpy(np.array(estimator(to_pil(images[i]))["depth"])).float() / 255
        assert torch.equal(depth[i, ..., 0], expected), f"{name} image {i}"
        assert torch.equal(depth[i, ..., 1], expected) and torch.equal(depth[i, ..., 2], expected)


def test_estimate_then_hint_equals_the_seeds_make_hint(nodes, depth_models):
    from transformers import pipeline

    (model,) = nodes["KandinskyDepthModelLoader"]().load("dpt-hybrid-midas")
    image = comfy_image(2, 48, 64)
    (depth,) = nodes["KandinskyDepthEstimate"]().estimate(model, image)
    (hint,) = nodes["KandinskyDepthHint"]().make_hint(depth)
    estimator = pipeline("depth-estimation", model=str(depth_models / "dpt-hybrid-midas"), device="cpu")
    assert torch.equal(hint.image, make_hint(to_pil(image[0]), estimator))


def test_wrong_folders_and_bad_images_give_clear_errors(nodes, depth_models):
    loader = nodes["KandinskyDepthModelLoader"]()
    with pytest.raises(ValueError, match="not a depth-estimation model folder"):
        loader.load("not-a-depth-model")
    with pytest.raises(ValueError, match="Unknown depth model 'nope'"):
        loader.load("nope")
    (model,) = loader.load("dpt-hybrid-midas")
    bad = comfy_image(3, 32, 32)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        nodes["KandinskyDepthEstimate"]().estimate(model, bad)
    with pytest.raises(ValueError, match="IMAGE"):
        nodes["KandinskyDepthEstimate"]().estimate(model, torch.rand(1, 32, 32))
    (depth,) = nodes["KandinskyDepthEstimate"]().estimate(model, comfy_image(4, 32, 32))  # still usable
    assert depth.shape == (1, 32, 32, 3)


def test_depth_weights_load_strictly(depth_models, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from kandinsky_core.loading.depth import load_depth_model
    from kandinsky_core.loading.strict import CheckpointMismatchError

    folder = tmp_path / "dpt"
    shutil.copytree(depth_models / "dpt-hybrid-midas", folder)
    weights = load_file(folder / "model.safetensors")
    missing = sorted(weights)[0]
    del weights[missing]
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match="depth_model") as err:
        load_depth_model(folder)
    assert missing in str(err.value)
