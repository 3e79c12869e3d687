"""Where Kandinsky repo folders live, and how a loader's model name becomes a folder.

Inside ComfyUI the folder type "kandinsky" is registered in `folder_paths` (ComfyUI's `models/kandinsky`
plus any `kandinsky:` entries of `extra_model_paths.yaml`); outside ComfyUI the folders named by the
environment variable KANDINSKY_MODEL_DIR (several joined with os.pathsep; default ./models/kandinsky).
A model name is a repo folder's path relative to one of those roots, e.g. "kandinsky-2-2-decoder".
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ..kandinsky_core.loading.repo import DOWNLOAD_HINT, MODEL_INDEX_NAME, list_repo_folders, read_model_index

logger = logging.getLogger(__name__)

FOLDER_NAME = "kandinsky"
ENV_VAR = "KANDINSKY_MODEL_DIR"
DEFAULT_DIR = os.path.join(".", "models", "kandinsky")
VERSIONS = {"prior": ("2.1", "2.2"), "decoder": ("2.1", "2.2")}  # Kandinsky versions each loader takes
LOADER_NODE = {"prior": "KandinskyPriorLoader", "decoder": "KandinskyDecoderLoader"}


def in_comfyui() -> bool:
    """True when running inside a ComfyUI process (its folder_paths module is already imported)."""
    return "folder_paths" in sys.modules and "comfy.model_management" in sys.modules


def register_comfy_folder() -> None:
    """Add ComfyUI's models/kandinsky to the "kandinsky" folder type (kept next to extra_model_paths entries)."""
    import folder_paths

    folder_paths.add_model_folder_path(FOLDER_NAME, os.path.join(folder_paths.models_dir, FOLDER_NAME))


EXAMPLE_INPUTS = Path(__file__).resolve().parent.parent / "workflows" / "inputs"  # images the templates load


def install_example_inputs() -> list[Path]:
    """Copy the templates' example images into ComfyUI's input folder when missing (never overwrites)."""
    import shutil

    import folder_paths

    copied = []
    if not hasattr(folder_paths, "get_input_directory"):  # a stand-in folder_paths (tests)
        return copied
    try:
        target = Path(folder_paths.get_input_directory())
        for source in sorted(EXAMPLE_INPUTS.glob("*.png")):
            if not (target / source.name).exists():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target / source.name)
                copied.append(target / source.name)
    except OSError as exc:  # a read-only input folder only costs the examples
        logger.warning("Could not copy the Kandinsky example images into ComfyUI's input folder: %s", exc)
    return copied


def model_roots() -> list[Path]:
    """The folders searched for Kandinsky repo folders, in priority order."""
    if in_comfyui():
        import folder_paths

        try:
            roots = folder_paths.get_folder_paths(FOLDER_NAME)
        except KeyError:
            roots = [os.path.join(folder_paths.models_dir, FOLDER_NAME)]
    else:
        roots = [p for p in os.environ.get(ENV_VAR, DEFAULT_DIR).split(os.pathsep) if p]
    return [Path(r) for r in roots]


def _versions_match(folder: Path, role: str) -> bool:
    try:
        return read_model_index(folder).version in VERSIONS[role]
    except (OSError, ValueError):
        return False


def list_models(role: str) -> list[str]:
    """Names of the repo folders a loader of `role` ("prior" or "decoder") can load, across all roots."""
    names: list[str] = []
    for root in model_roots():
        for name in list_repo_folders(root, roles=(role,)):
            if name not in names and _versions_match(root / name, role):
                names.append(name)
    return names


def resolve_model(name: str, role: str) -> Path:
    """The repo folder behind a loader's model name; a clear error if it is unknown or of another role."""
    roots = model_roots()
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts:
        raise ValueError(f"Invalid Kandinsky model name {name!r}: expected a folder name as listed by the loader.")
    candidates = [root / name for root in roots]
    folder = next((c for c in candidates if (c / MODEL_INDEX_NAME).is_file()), None)
    if folder is None:
        existing = next((c for c in candidates if c.is_dir()), None)
        if existing is not None:
            raise ValueError(
                f"{existing} is not a Kandinsky repo folder: it has no {MODEL_INDEX_NAME}. Select a folder "
                f"downloaded in diffusers format. {DOWNLOAD_HINT}"
            )
        available = list_models(role)
        raise ValueError(
            f"Unknown Kandinsky {role} model {name!r}: no such folder in {[str(r) for r in roots]}. "
            f"Available: {available or 'none'}. {DOWNLOAD_HINT}"
        )
    index = read_model_index(folder)  # raises for non-Kandinsky pipelines
    if index.role != role or index.version not in VERSIONS[role]:
        other = LOADER_NODE.get(index.role)
        where = f" Load it with {other} instead." if other and index.version in VERSIONS.get(index.role, ()) else ""
        raise ValueError(
            f"{name!r} is a Kandinsky {index.version} {index.role} folder ({index.class_name}), but this loader "
            f"takes a Kandinsky {' or '.join(VERSIONS[role])} {role} folder.{where}"
        )
    return folder
