"""Depth-estimation model folders (transformers layout: config.json + weights + preprocessor_config.json), as
`hf download Intel/dpt-hybrid-midas --local-dir models/kandinsky/dpt-hybrid-midas` leaves them.

Any transformers depth-estimation architecture loads (DPT such as Intel/dpt-large or Intel/dpt-hybrid-midas,
Depth Anything V2 `-hf` folders, ...): the class comes from the config's `model_type` through transformers'
depth-estimation model table, and the weights load strictly through the core's reader.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..components import DepthModel
from .repo import MODEL_INDEX_NAME, MissingFileError, read_component_config

logger = logging.getLogger(__name__)

PREPROCESSOR_NAME = "preprocessor_config.json"
DEPTH_ARCHITECTURE_SUFFIX = "ForDepthEstimation"
DOWNLOAD_HINT = (
    "Download a transformers depth-estimation model into its own folder under models/kandinsky, e.g. "
    "`hf download Intel/dpt-hybrid-midas --local-dir models/kandinsky/dpt-hybrid-midas` or `hf download "
    "depth-anything/Depth-Anything-V2-Small-hf --local-dir models/kandinsky/Depth-Anything-V2-Small-hf`."
)


def _architectures(folder: Path) -> list[str]:
    try:
        with open(folder / "config.json", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    names = data.get("architectures") if isinstance(data, dict) else None
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def is_depth_model_folder(folder: Path) -> bool:
    """A transformers depth-estimation model folder: a *ForDepthEstimation config and an image processor."""
    return (folder / PREPROCESSOR_NAME).is_file() and any(
        a.endswith(DEPTH_ARCHITECTURE_SUFFIX) for a in _architectures(folder))


def list_depth_folders(models_dir: str | Path, max_depth: int = 3) -> list[str]:
    """Sub-folders (relative posix paths, sorted) of `models_dir` holding a depth-estimation model."""
    root = Path(models_dir)
    found, stack = [], [(root, 0)] if root.is_dir() else []
    while stack:
        folder, depth = stack.pop()
        try:
            children = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError as e:
            logger.warning("Cannot list %s: %s", folder, e)
            continue
        for child in children:
            if is_depth_model_folder(child):
                found.append(child.relative_to(root).as_posix())
            elif depth + 1 < max_depth and not (child / MODEL_INDEX_NAME).is_file():
                stack.append((child, depth + 1))
    return sorted(found)


def _model_class(folder: Path, config: dict) -> type:
    """The transformers class for the folder's `model_type` in the depth-estimation table."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES

    model_type = config.get("model_type")
    name = MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES.get(model_type) if isinstance(model_type, str) else None
    if name is None:
        raise ValueError(
            f"{folder} holds a {model_type!r} model, not a depth-estimation model transformers knows (known: "
            f"{', '.join(sorted(MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES))}). {DOWNLOAD_HINT}"
        )
    return getattr(transformers, name)


def load_depth_model(folder: str | Path, dtype: torch.dtype = torch.float32) -> DepthModel:
    """A depth-estimation model folder on the CPU in `dtype`, weights loaded strictly."""
    from transformers import AutoImageProcessor

    from .transformers_models import load_transformers_model

    folder = Path(folder)
    if (folder / MODEL_INDEX_NAME).is_file():
        raise ValueError(f"{folder} is a Kandinsky repo folder, not a depth-estimation model: load it with the "
                         f"Kandinsky loaders. {DOWNLOAD_HINT}")
    model_class = _model_class(folder, read_component_config(folder))
    if not (folder / PREPROCESSOR_NAME).is_file():
        raise MissingFileError(f"{folder} has no {PREPROCESSOR_NAME} (the image processor the model was trained "
                               f"with); the download is incomplete. {DOWNLOAD_HINT}")
    model = load_transformers_model(folder, model_class, "depth_model", f"depth model ({model_class.__name__})",
                                    dtype, "cpu")
    try:
        processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"The image processor of {folder} ({PREPROCESSOR_NAME}) cannot be read ({e}); "
                         "re-download the folder.") from e
    return DepthModel(name=folder.name, model=model, image_processor=processor, dtype=dtype)
