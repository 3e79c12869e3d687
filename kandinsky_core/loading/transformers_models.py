"""Strict loading of transformers models (CLIP towers, the Kandinsky 3 T5 encoder) and their tokenizers.

transformers' `from_pretrained` loads leniently (a missing key becomes a randomly initialised layer, reported
only in its log). Here the model is built from the folder's config.json on the meta device and takes the
tensors read by the core's own weight reader through `load_strict`, so every file problem (LFS pointer,
truncated file, pickle with code, missing shard) and every key/shape mismatch gets the core's messages,
naming the component and the key.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .repo import MissingFileError, read_component_config
from .strict import empty_weights, load_strict
from .weights import read_component_weights

logger = logging.getLogger(__name__)

# Upper bounds for the size keys of transformers configs: far above every real checkpoint (Flan-UL2:
# d_model 4096, d_ff 16384, 32 layers, vocab 32128), low enough that a corrupt or hostile config.json is
# refused before anything is built.
SIZE_LIMITS: dict[str, int] = {
    "vocab_size": 1_048_576,
    "hidden_size": 65_536,
    "d_model": 65_536,
    "intermediate_size": 262_144,
    "d_ff": 262_144,
    "d_kv": 16_384,
    "num_hidden_layers": 512,
    "num_layers": 512,
    "num_attention_heads": 1_024,
    "num_heads": 1_024,
    "max_position_embeddings": 1_048_576,
    "relative_attention_num_buckets": 65_536,
    "relative_attention_max_distance": 1_048_576,
    "projection_dim": 65_536,
    "image_size": 16_384,
    "patch_size": 16_384,
    "num_channels": 64,
    "type_vocab_size": 65_536,
    "numDims": 65_536,
    "transformerDimensions": 65_536,
}
MAX_PARAMETERS = 100_000_000_000  # 100 B: about 10x Flan-UL2's encoder


def check_config_sizes(config: dict, component: str, folder: str | os.PathLike) -> None:
    """Refuse non-integer, non-positive or absurd size values in a transformers config.json dict."""
    for key, limit in SIZE_LIMITS.items():
        if key not in config or config[key] is None:
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ValueError(
                f"The {component!r} config {Path(folder) / 'config.json'} has {key} = {value!r}; expected an "
                f"integer from 1 to {limit}. The file is corrupt or not a config of this model: re-download it."
            )


def _parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tied_groups(module: nn.Module) -> list[list[str]]:
    """State-dict keys that name one shared tensor (e.g. T5's `shared.weight` and `encoder.embed_tokens.weight`)."""
    by_tensor: dict[int, list[str]] = {}
    for key, tensor in module.state_dict(keep_vars=True).items():
        by_tensor.setdefault(id(tensor), []).append(key)
    return [keys for keys in by_tensor.values() if len(keys) > 1]


def _renamed_as_transformers_loads(module: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict:
    """Apply transformers' checkpoint renamings (5.x `conversion_mapping`) to the keys the module does not
    know; transformers 4.x has none (its module names are the checkpoint names). Tensor-merging conversions
    are not applied: such checkpoints stay mismatched and are refused by the strict check."""
    expected = set(module.state_dict())
    if all(key in expected for key in state_dict):
        return state_dict
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key
    except ImportError:
        return state_dict
    renamings = [t for t in get_model_conversion_mapping(module) if isinstance(t, WeightRenaming)]
    renamed = {}
    for key, value in state_dict.items():
        new = key if key in expected else rename_source_key(key, renamings, [])[0]
        renamed[new if new not in renamed else key] = value
    return renamed


def align_state_dict(module: nn.Module, state_dict: dict[str, torch.Tensor], component: str) -> dict:
    """Accept the harmless ways checkpoints differ from `module.state_dict()`, before the strict check.

    * tied weights: a checkpoint may carry any one, or all, of the keys of a tied tensor; all keys get the
      first present one (transformers' own tying keeps the first);
    * non-persistent buffers (e.g. CLIP's `position_ids`) saved by older transformers versions are dropped.
    * checkpoint names that transformers >= 5 renames when it loads (e.g. DINOv2's `attention.attention.query`
      -> `attention.q_proj` in Depth Anything; Hub files keep the old names) get transformers' own renaming.
    Everything else (a missing, unexpected or mis-shaped weight) is left for `load_strict` to refuse.
    """
    state_dict = _renamed_as_transformers_loads(module, dict(state_dict))
    for keys in _tied_groups(module):
        present = [k for k in keys if k in state_dict]
        if not present:
            continue  # reported as missing by the strict check
        source = state_dict[present[0]]
        for key in present[1:]:
            if state_dict[key].shape == source.shape and not torch.equal(state_dict[key], source):
                logger.warning("%s: tied weights %s and %s differ in the checkpoint; using %s.",
                               component, present[0], key, present[0])
        for key in keys:
            state_dict[key] = source
    persistent = set(module.state_dict())
    stale = [name for name, _ in module.named_buffers() if name not in persistent and name in state_dict]
    for name in stale:
        logger.debug("%s: dropping the saved non-persistent buffer %s", component, name)
        del state_dict[name]
    return state_dict


def _keep_fp32(module: nn.Module, dtype: torch.dtype) -> None:
    """transformers keeps `_keep_in_fp32_modules` (T5: the FFN output projections `wo`) in fp32 when the
    rest of the model is fp16, so their outputs cannot overflow; do the same."""
    names = set(getattr(module, "_keep_in_fp32_modules", None) or ())
    if dtype != torch.float16 or not names:
        return
    for name, sub in module.named_modules():
        if name.split(".")[-1] in names:
            sub.to(torch.float32)


def load_transformers_model(
    folder: str | os.PathLike,
    model_class: type,
    component: str,
    description: str,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Build `model_class` from folder/config.json on the meta device and load its weights strictly.

    `component` ("text_encoder", "image_encoder") and `description` (e.g. "Kandinsky 3 T5 text encoder")
    name the model in error messages. Returns the model in eval mode without gradients.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(
            f"The {component!r} folder {folder} does not exist; expected a transformers model folder "
            "(config.json + model.safetensors) inside the repo folder. Re-download the repo."
        )
    raw = read_component_config(folder)
    check_config_sizes(raw, component, folder)
    try:
        config = model_class.config_class.from_dict(raw)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"The {component!r} config {folder / 'config.json'} is not a valid "
                         f"{model_class.config_class.__name__} ({e}); re-download it.") from e
    state_dict = read_component_weights(folder)
    with empty_weights():
        model = model_class(config)
    count = _parameter_count(model)
    if count > MAX_PARAMETERS:
        raise ValueError(f"The {component!r} config {folder / 'config.json'} describes {count:,} parameters; "
                         "that is no real model: the file is corrupt, re-download it.")
    model.to(dtype)  # parameters are still on meta: this only sets the dtypes the tensors are converted to
    _keep_fp32(model, dtype)
    load_strict(model, align_state_dict(model, state_dict, component), component, description, device=device)
    return model.eval().requires_grad_(False)


def check_tokenizer_folder(folder: str | os.PathLike, needed: tuple[tuple[str, ...], ...], what: str) -> Path:
    """The tokenizer folder, if it holds at least one complete set of files in `needed`; else a clear error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(
            f"The tokenizer folder {folder} does not exist; the {what} needs it. Re-download the repo "
            "(the tokenizer/ subfolder is part of it)."
        )
    for names in needed:
        if all((folder / n).is_file() and (folder / n).stat().st_size > 0 for n in names):
            return folder
    options = " or ".join(" + ".join(names) for names in needed)
    raise MissingFileError(
        f"The tokenizer folder {folder} lacks the {what} files (expected {options}); it is empty or incomplete: "
        "re-download the repo."
    )


def load_tokenizer(tokenizer_classes: tuple[type, ...], folder: Path, what: str) -> Any:
    """Load a tokenizer from local files only, trying each class in turn (fast first); clear error if none works."""
    errors = []
    for cls in tokenizer_classes:
        try:
            return cls.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, ImportError, TypeError, KeyError, RuntimeError) as e:
            # transformers 4.x without tokenizer.json or converter dependencies, or a corrupt file
            logger.info("%s could not load %s: %s", cls.__name__, folder, e)
            errors.append(f"{cls.__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
    raise ValueError(
        f"Could not load the {what} from {folder} ({'; '.join(errors)}). The tokenizer files are corrupt or "
        "incomplete: re-download the repo."
    )
