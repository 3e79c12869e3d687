"""Find and read the weight files of one component folder, safely.

File names follow diffusers (`diffusion_pytorch_model*.safetensors|bin`) and transformers
(`model*.safetensors`, `pytorch_model*.bin`), single or sharded (`...-0000k-of-0000n...` plus an
`.index.json` whose `weight_map` names the shard of every tensor), with an optional variant infix
(`diffusion_pytorch_model.fp16.safetensors`, `model.safetensors.index.fp16.json`).

Search order: safetensors before .bin; a shard index before a single file; the requested variant
before the plain files. Variant fallback (what a user of a half-downloaded or fp16-only folder expects):
if the requested variant (e.g. "fp16") is absent the plain files are used, and with no variant
requested an fp16-only folder is used as is; both cases are logged. Weights are cast to the dtype the
user picked after loading, so the computed function is the same either way.

Pickled files (.bin/.pt/.pth/.ckpt) are only ever read with `torch.load(..., weights_only=True)` and must
hold a flat dict of str -> Tensor.
"""
import logging
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .repo import MissingFileError, read_json

logger = logging.getLogger(__name__)

# (stem, extension) of single-file weights, in search order: safetensors first, diffusers names first.
_WEIGHT_NAMES = (
    ("diffusion_pytorch_model", "safetensors"),
    ("model", "safetensors"),
    ("diffusion_pytorch_model", "bin"),
    ("pytorch_model", "bin"),
)
_SAFETENSORS_EXT = (".safetensors",)
_PICKLE_EXT = (".bin", ".pt", ".pth", ".ckpt")
_LFS_POINTER = b"version https://git-lfs"
_FALLBACK_VARIANT = "fp16"  # tried when no variant is requested and no plain files exist


def _candidates(stem: str, ext: str, variant: str | None) -> tuple[list[str], str]:
    """(index file names, single file name) for one stem/extension/variant."""
    if variant is None:
        return [f"{stem}.{ext}.index.json"], f"{stem}.{ext}"
    # current diffusers/transformers naming, then the legacy `<stem>.<variant>.<ext>.index.json`
    return [f"{stem}.{ext}.index.{variant}.json", f"{stem}.{variant}.{ext}.index.json"], f"{stem}.{variant}.{ext}"


def _looked_for(variant: str | None) -> list[str]:
    names = []
    for stem, ext in _WEIGHT_NAMES:
        indexes, single = _candidates(stem, ext, variant)
        names += [single, indexes[0]]
    return names


def _check_shard_name(index_path: Path, name: object) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"The shard index {index_path} names an invalid shard file {name!r}; re-download the folder.")
    return name


def read_shard_index(index_path: str | Path) -> dict[str, str]:
    """The `weight_map` (tensor name -> shard file name) of a shard index file, validated."""
    index_path = Path(index_path)
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(
            f"The shard index {index_path} has no usable 'weight_map'; it is corrupt or incomplete: re-download it."
        )
    return {str(k): _check_shard_name(index_path, v) for k, v in weight_map.items()}


def _shards(index_path: Path) -> list[Path]:
    """Shard files of an index, in first-use order; every shard must exist."""
    names = list(dict.fromkeys(read_shard_index(index_path).values()))
    paths = [index_path.parent / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise MissingFileError(
            f"{len(missing)} of {len(paths)} weight shards listed in {index_path} are missing "
            f"({', '.join(missing[:5])}): the download is incomplete; re-download the folder."
        )
    return paths


def _find(folder: Path, variant: str | None) -> tuple[Path | None, list[Path]]:
    """(shard index or None, weight files) for exactly this variant; (None, []) if none exist."""
    for stem, ext in _WEIGHT_NAMES:
        indexes, single = _candidates(stem, ext, variant)
        for name in indexes:
            if (folder / name).is_file():
                return folder / name, _shards(folder / name)
        if (folder / single).is_file():
            return None, [folder / single]
    return None, []


def locate_weights(component_dir: str | Path, variant: str | None = None) -> tuple[Path | None, list[Path]]:
    """(shard index or None, weight files) of a component folder, applying the variant fallback."""
    folder = Path(component_dir)
    if not folder.is_dir():
        raise MissingFileError(f"The component folder {folder} does not exist.")
    index, files = _find(folder, variant)
    if files:
        return index, files
    fallback = None if variant is not None else _FALLBACK_VARIANT
    index, files = _find(folder, fallback)
    if files:
        if variant is not None:
            logger.info("No %s weights in %s; using the full-precision files %s.", variant, folder, files[0].name)
        else:
            logger.info("Only %s weights in %s; using %s.", fallback, folder, files[0].name)
        return index, files
    looked = _looked_for(variant) + _looked_for(fallback)
    present = sorted(p.name for p in folder.iterdir() if p.suffix in _SAFETENSORS_EXT + _PICKLE_EXT)
    found = f" Weight-like files present: {', '.join(present)}." if present else ""
    shard_hint = (
        " Shard files are present but their .index.json is missing: re-download the folder."
        if any("-of-" in n for n in present)
        else ""
    )
    raise MissingFileError(
        f"No weight file found in {folder}. Looked for: {', '.join(dict.fromkeys(looked))}.{found}{shard_hint} "
        "The download is incomplete or this is not a diffusers-format component folder."
    )


def find_weight_files(component_dir: str | Path, variant: str | None = None) -> list[Path]:
    """The weight files of a component folder (all shards when sharded); see the module doc for the order."""
    return locate_weights(component_dir, variant)[1]


def _corrupt(path: Path, reason: object) -> ValueError:
    with open(path, "rb") as f:
        head = f.read(len(_LFS_POINTER))
    if head == _LFS_POINTER:
        return ValueError(
            f"{path} is a Git LFS pointer, not the weights. Fetch the real files (`git lfs pull`, or "
            "`hf download <repo> --local-dir <folder>`)."
        )
    text = str(reason).strip()
    short = text.splitlines()[0].split(". ")[0] if text else type(reason).__name__  # torch's first sentence
    return ValueError(
        f"{path} is corrupt or incompletely downloaded ({short}); delete it and re-download the model folder."
    )


def _read_safetensors(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device=device)
    except SafetensorError as e:
        raise _corrupt(path, e) from e


def load_pickle_safely(path: Path, mmap: bool = False) -> object:
    """`torch.load(weights_only=True)`: tensors and plain containers only, nothing executed.

    mmap=True maps the file instead of reading it (tensors are views of the page cache until cast), so a
    file larger than half the RAM still loads; files in torch's legacy (pre-zip) format are read normally.
    A payload that needs any other Python object is refused with a ValueError; a truncated or corrupt
    file gives a ValueError saying to re-download it.
    """
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as e:
            if not (mmap and "zipfile" in str(e)):
                raise
            logger.info("%s is in torch's legacy format; reading it without memory-mapping", path)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        # torch's own advice (load with weights_only=False) is deliberately not passed on
        detail = next((ln for ln in lines if "global" in ln.lower() or "WeightsUnpickler" in ln), "")
        if "truncated" in text.lower() or "Weights only load failed" not in text:
            raise _corrupt(path, e) from e
        raise ValueError(
            f"{path} contains non-tensor Python objects and was refused for safety (only plain tensor state "
            f"dicts are loaded; {detail}). Use a .safetensors file or a checkpoint that holds tensors only."
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise _corrupt(path, e) from e


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    payload = load_pickle_safely(path)
    if not isinstance(payload, dict):
        raise ValueError(
            f"{path} holds a {type(payload).__name__}, not a state dict (a flat dict of tensor name -> tensor); "
            "refused."
        )
    for key, value in payload.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path} is not a flat state dict: entry {key!r} holds a {type(value).__name__}, expected a tensor "
                "under a string name (nested or wrapped checkpoints are refused)."
            )
    return dict(payload)


def _read_one(path: Path, device: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MissingFileError(f"Weight file not found: {path}")
    name = path.name.lower()
    if name.endswith(_SAFETENSORS_EXT):
        return _read_safetensors(path, device)
    if name.endswith(_PICKLE_EXT):
        sd = _read_pickle(path)
        return sd if device == "cpu" else {k: v.to(device) for k, v in sd.items()}
    raise ValueError(f"Unsupported weight file {path}: expected .safetensors, .bin, .pt, .pth or .ckpt.")


def read_state_dict(files: list[Path], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read and merge weight files into one state dict on `device`.

    An entry may also be a shard index (`*.index*.json`): its shards are read once each and every tensor
    the index lists must be present. Duplicate tensor names across files are an error.
    """
    device = str(device)
    state_dict: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    expected: dict[str, Path] = {}  # tensor name -> index that lists it
    to_read: list[Path] = []
    for path in map(Path, files):
        if path.name.endswith(".json"):
            for key in read_shard_index(path):
                expected[key] = path
            to_read += _shards(path)
        else:
            to_read.append(path)
    for path in dict.fromkeys(to_read):
        for key, value in _read_one(path, device).items():
            if key in state_dict:
                raise ValueError(
                    f"Tensor {key!r} appears in both {origin[key]} and {path}; the weight files are inconsistent: "
                    "re-download the folder."
                )
            state_dict[key] = value
            origin[key] = path
    missing = [k for k in expected if k not in state_dict]
    if missing:
        index = expected[missing[0]]
        raise ValueError(
            f"{len(missing)} tensors listed in {index} are absent from its shards (e.g. {', '.join(missing[:5])}): "
            "the shards are corrupt or from another download; re-download the folder."
        )
    return state_dict


def read_component_weights(
    component_dir: str | Path, variant: str | None = None, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Find and read a component folder's weights (shard index checked when sharded)."""
    index, files = locate_weights(component_dir, variant)
    logger.debug("Reading %s", index or files)
    return read_state_dict([index] if index is not None else files, device=device)
