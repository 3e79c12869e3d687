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
VERSIONS = {"prior": ("2.1", "2.2"), "decoder": ("2.1", "2.2", "3"), "text_encoder": ("3",)}  # per loader role
LOADER_NODE = {"prior": "KandinskyPriorLoader", "decoder": "KandinskyDecoderLoader",
               "text_encoder": "KandinskyTextEncoderLoader"}
# The model_index.json role of the folders a loader role reads: the Kandinsky 3 text encoder lives in the
# kandinsky-3 repo folder next to its UNet and MoVQ (a "decoder" folder in repo terms).
FOLDER_ROLE = {"text_encoder": "decoder"}


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


def _folder_role(role: str) -> str:
    return FOLDER_ROLE.get(role, role)


def _versions_match(folder: Path, role: str) -> bool:
    try:
        return read_model_index(folder).version in VERSIONS[role]
    except (OSError, ValueError):
        return False


def list_models(role: str) -> list[str]:
    """Names of the repo folders a loader of `role` ("prior", "decoder", "text_encoder") can load, across all roots."""
    names: list[str] = []
    for root in model_roots():
        for name in list_repo_folders(root, roles=(_folder_role(role),)):
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
    if index.role != _folder_role(role) or index.version not in VERSIONS[role]:
        raise ValueError(
            f"{name!r} is a Kandinsky {index.version} {index.role} folder ({index.class_name}), but this loader "
            f"takes a Kandinsky {' or '.join(VERSIONS[role])} {_folder_role(role)} folder.{_where(index)}"
        )
    return folder


def _where(index) -> str:
    """Which loader node takes a folder of this index instead."""
    if index.version == "3":
        return (" Kandinsky 3 has no prior: load its folder with KandinskyTextEncoderLoader (prompt encoder) and "
                "KandinskyDecoderLoader (UNet and MoVQ).")
    other = LOADER_NODE.get(index.role)
    return f" Load it with {other} instead." if other and index.version in VERSIONS.get(index.role, ()) else ""


def _original_releases(max_depth: int = 2) -> list[tuple[str, Path]]:
    """(name relative to its root, folder) of every original ai-forever Kandinsky 3 release folder, all roots."""
    from ..kandinsky_core.loading.originals import is_original_release

    found: list[tuple[str, Path]] = []
    for root in model_roots():
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                if is_original_release(child):
                    rel = child.relative_to(root).as_posix()
                    if rel not in [name for name, _ in found]:
                        found.append((rel, child))
                elif depth + 1 < max_depth and not _is_repo_or_unreadable(child):
                    stack.append((child, depth + 1))
    return found


def _is_repo_or_unreadable(folder: Path) -> bool:
    """A diffusers repo folder, or one that cannot be read: neither is searched for release folders."""
    try:
        return (folder / MODEL_INDEX_NAME).is_file()
    except OSError:
        return True


def list_original_unets() -> list[str]:
    """Loader choices for the UNets of original ai-forever Kandinsky 3 release folders ("Kandinsky3.1 / flash")."""
    from ..kandinsky_core.loading.originals import SEPARATOR, list_original_unets as unets

    return [f"{name}{SEPARATOR}{e.kind}" for name, folder in _original_releases() for e in unets(folder)]


def list_original_text_encoders() -> list[str]:
    """Text encoder loader choices for original 3.1 releases ("Kandinsky3.1 / flan_ul2_encoder")."""
    from ..kandinsky_core.loading.originals import SEPARATOR, TEXT_ENCODER_DIR, text_encoder_dir

    return [f"{name}{SEPARATOR}{TEXT_ENCODER_DIR}" for name, folder in _original_releases()
            if text_encoder_dir(folder) is not None]


def resolve_original(name: str, parts: tuple[str, ...]) -> tuple[Path, str] | None:
    """(release folder, part) for an original-release choice "<folder> / <part>"; None for a diffusers folder name."""
    from ..kandinsky_core.loading.originals import SEPARATOR, is_original_release

    if SEPARATOR not in name:
        return None
    rel, part = name.rsplit(SEPARATOR, 1)
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts or part not in parts:
        raise ValueError(f"Invalid Kandinsky model name {name!r}: expected a choice as listed by the loader.")
    for root in model_roots():
        if is_original_release(root / rel):
            return root / rel, part
    raise ValueError(f"No original Kandinsky 3 release folder {rel!r} in {[str(r) for r in model_roots()]}. "
                     f"{DOWNLOAD_HINT}")


def resolve_original_unet(name: str) -> tuple[Path, str] | None:
    """(release folder, UNet kind) for a decoder loader choice such as "Kandinsky3.1 / flash"."""
    from ..kandinsky_core.loading.originals import UNET_FILES

    return resolve_original(name, tuple(UNET_FILES))


def list_depth_models() -> list[str]:
    """Names of the depth-estimation model folders (transformers layout) across all roots."""
    from ..kandinsky_core.loading.depth import list_depth_folders

    names: list[str] = []
    for root in model_roots():
        names += [n for n in list_depth_folders(root) if n not in names]
    return names


def resolve_depth_model(name: str) -> Path:
    """The depth-estimation model folder behind a loader's name; a clear error if it is unknown or not one."""
    from ..kandinsky_core.loading.depth import DOWNLOAD_HINT as DEPTH_HINT, is_depth_model_folder

    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"Invalid depth model name {name!r}: expected a folder name as listed by the loader.")
    candidates = [root / name for root in model_roots()]
    folder = next((c for c in candidates if is_depth_model_folder(c)), None)
    if folder is not None:
        return folder
    existing = next((c for c in candidates if c.is_dir()), None)
    if existing is not None:
        raise ValueError(f"{existing} is not a depth-estimation model folder (a config.json whose architectures "
                         f"end in ForDepthEstimation, and a preprocessor_config.json). {DEPTH_HINT}")
    raise ValueError(f"Unknown depth model {name!r}: no such folder in {[str(r) for r in model_roots()]}. "
                     f"Available: {list_depth_models() or 'none'}. {DEPTH_HINT}")
