"""A tiny `models/kandinsky` folder for the node tests, built once per test process.

Repo folders carry the real Hugging Face names; two extra folders exercise the loaders' errors.
"""
from __future__ import annotations

import atexit
import functools
import importlib
import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO_NAMES = {  # tiny_models.repos builder name -> folder name under models/kandinsky
    "prior": "kandinsky-2-2-prior",
    "decoder22": "kandinsky-2-2-decoder",
    "inpaint22": "kandinsky-2-2-decoder-inpaint",
    "depth22": "kandinsky-2-2-controlnet-depth",
    "k3": "kandinsky-3",
}
PRIOR, DECODER, INPAINT, DEPTH, K3 = (REPO_NAMES[k] for k in ("prior", "decoder22", "inpaint22", "depth22", "k3"))
DEPTH_ESTIMATOR = "dpt-hybrid-midas"  # a tiny DPT (transformers layout) under the depth workflows' model name
SAME = 1e-6  # node graph vs core stage functions
NOT_A_REPO = "not-a-repo"  # a folder without model_index.json
OTHER_PIPELINE = "stable-diffusion"  # a diffusers folder of another pipeline


@functools.lru_cache(maxsize=None)
def tiny_model_dir() -> Path:
    """models/kandinsky with the tiny 2.2 prior, decoder, inpaint, depth and Kandinsky 3 repos and a tiny depth
    estimator (deleted at exit)."""
    from tiny_models.depth import build_dpt
    from tiny_models.k3 import build_k3_repo
    from tiny_models.repos import build_decoder_repo, build_prior_repo

    root = Path(tempfile.mkdtemp(prefix="kandinsky-nodes-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    models = root / "models" / "kandinsky"
    models.mkdir(parents=True)
    for key, name in REPO_NAMES.items():
        build = root / "build" / key
        if key == "prior":
            built = build_prior_repo(build)
        elif key == "k3":
            built = build_k3_repo(build)
        else:
            built = build_decoder_repo(build, key)
        shutil.move(str(built), str(models / name))
    build_dpt(models / DEPTH_ESTIMATOR)
    (models / NOT_A_REPO / "unet").mkdir(parents=True)
    (models / OTHER_PIPELINE).mkdir()
    (models / OTHER_PIPELINE / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    shutil.rmtree(root / "build")
    return models


# --- fixtures and helpers shared by the node test modules (import them into the module) ----------


@pytest.fixture(scope="module")
def nodes(pack):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KANDINSKY_MODEL_DIR", str(tiny_model_dir()))
        mp.setenv("KANDINSKY_DEVICE", "cpu")
        yield pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def core(nodes):
    def m(name):
        return importlib.import_module(f"kandinsky_pack.kandinsky_core.{name}")

    return SimpleNamespace(prior=m("stages.prior"), decoder=m("stages.decoder"), movq=m("stages.movq"),
                           hints=m("stages.hints"), components=m("components"), payloads=m("payloads"),
                           rt=m("runtime").LocalRuntime("cpu"))


@pytest.fixture(scope="module")
def models(nodes):
    """Loaded through the loader nodes; the loader instances stay alive, as ComfyUI keeps one per node."""
    loaders = [nodes["KandinskyPriorLoader"]()]
    out = {"prior": call(loaders[0], prior_name=PRIOR, dtype="fp32")[0], "loaders": loaders}
    for key, name in (("decoder", DECODER), ("inpaint", INPAINT), ("depth", DEPTH)):
        loaders.append(nodes["KandinskyDecoderLoader"]())
        out[key] = call(loaders[-1], decoder_name=name, dtype="fp32")
    return out


def gen(seed):
    return torch.Generator("cpu").manual_seed(seed)


def rand_image(h, w, seed, batch=1):
    return torch.rand(batch, h, w, 3, generator=gen(seed))


def block_mask(h, w):
    mask = torch.zeros(1, h, w)
    mask[:, : h // 2, : w * 5 // 8] = 1.0  # repaint the top-left block
    return mask


def assert_same(a, b, tol=SAME):
    assert a.shape == b.shape
    diff = float((a.float() - b.float()).abs().max())
    assert diff <= tol, f"max abs diff {diff} > {tol}"



def node_inputs(cls, sockets: dict, **overrides) -> dict:
    """Inputs for a node as ComfyUI builds them: widget defaults (a combo's default or first entry) from
    INPUT_TYPES, sockets from `sockets` (optional ones only when given), then `overrides`."""
    spec = cls.INPUT_TYPES()
    kwargs = {}
    for section in ("required", "optional"):
        for name, (kind, *rest) in spec.get(section, {}).items():
            options = rest[0] if rest else {}
            if name in sockets:
                kwargs[name] = sockets[name]
            elif section == "optional":
                continue
            elif isinstance(kind, list):
                kwargs[name] = options.get("default", kind[0] if kind else None)
            elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                kwargs[name] = options["default"]
            else:
                raise KeyError(f"{cls.__name__}: no socket value given for {name} ({kind})")
    kwargs.update(overrides)
    return kwargs


def call(cls_or_node, **kwargs):
    """Call a node class (or instance) through its FUNCTION, as ComfyUI's executor does."""
    node = cls_or_node() if isinstance(cls_or_node, type) else cls_or_node
    return getattr(node, node.FUNCTION)(**kwargs)
