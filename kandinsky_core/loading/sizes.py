"""Check a model built on the meta device against the size of its weight files, before reading them.

A config.json whose sizes are each in range can still describe a model far larger than its checkpoint (a
corrupt or mismatched config): that is refused here, from the files' sizes on disk, before any tensor is
read or allocated.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .weights import locate_weights

MIN_BYTES_PER_PARAMETER = 2  # fp16 / bf16: the smallest dtype a Kandinsky checkpoint is stored in


def count_parameters(module: nn.Module) -> int:
    """Parameters of a module (shared ones once); works on the meta device."""
    return sum(p.numel() for p in module.parameters())


def weight_files_size(folder: str | Path) -> tuple[int, list[Path]]:
    """(total bytes, files) of a component folder's weights (every shard when sharded)."""
    files = locate_weights(folder)[1]
    return sum(f.stat().st_size for f in files), files


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def check_weights_fit(folder: str | Path, module: nn.Module, component: str) -> None:
    """Raise if `folder`'s weight files are too small to hold `module`'s parameters (at 2 bytes each)."""
    parameters = count_parameters(module)
    size, files = weight_files_size(folder)
    need = parameters * MIN_BYTES_PER_PARAMETER
    if size < need:
        raise ValueError(
            f"{Path(folder) / 'config.json'} describes a {component} with {parameters:,} parameters (at least "
            f"{_gb(need)} of weights in fp16), but its weight files ({', '.join(f.name for f in files)}) hold only "
            f"{_gb(size)}: config.json does not belong to these weights, or the download is incomplete. "
            "Re-download the folder."
        )
