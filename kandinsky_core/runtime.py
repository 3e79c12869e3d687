"""The seam between the core and its host: devices, dtypes, model residency, progress, interrupt.

The core never imports ComfyUI. Stage functions take a `Runtime`; `LocalRuntime` does the host's jobs
with plain torch, and the node pack supplies a ComfyUI-backed runtime (nodes/comfy_runtime.py).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable, Protocol

import torch
from torch import nn

from . import memory

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_CHOICES = ["auto", "fp32", "fp16", "bf16"]


class Interrupted(RuntimeError):
    """Raised between sampling steps when the user cancelled the run."""


class Runtime(Protocol):
    """What stage functions need from their host."""

    def device(self) -> torch.device: ...

    def load(self, modules: Iterable[nn.Module]) -> None:
        """Make `modules` resident on `device()` (the host may evict other models to make room)."""

    def progress(self, step: int, total: int) -> None:
        """Report a finished step; may raise to stop the run (the host's Cancel)."""

    def preview(self, latents: torch.Tensor) -> None:
        """The current x̂₀ estimate (B, 4, h, w MoVQ latents), called before each `progress`; hosts may show it."""


class LocalRuntime:
    """Plain-torch host: one device, modules moved there on demand, optional progress callback.

    `memory_mode` ("gpu", "model_offload", "lowvram"; see kandinsky_core.memory) decides what stays on
    the device; runtimes of the same device and mode share one residency manager.
    """

    def __init__(self, device: torch.device | str | None = None,
                 on_progress: Callable[[int, int], None] | None = None, memory_mode: str = "gpu") -> None:
        self._device = torch.device(device) if device is not None else default_device()
        self._on_progress = on_progress
        self._interrupt = threading.Event()
        self._memory = memory.manager_for(self._device, memory_mode)

    def device(self) -> torch.device:
        return self._device

    @property
    def memory_mode(self) -> str:
        return self._memory.mode

    def load(self, modules: Iterable[nn.Module]) -> None:
        self._memory.load(modules)

    def offload_all(self) -> None:
        """Send every model this runtime's memory manager loaded back to the CPU."""
        self._memory.offload_all()

    def interrupt(self) -> None:
        """Ask the running stage to stop after its current step (thread-safe)."""
        self._interrupt.set()

    def preview(self, latents: torch.Tensor) -> None:
        """No preview outside a host UI."""

    def progress(self, step: int, total: int) -> None:
        if self._interrupt.is_set():
            self._interrupt.clear()
            raise Interrupted(f"Kandinsky run interrupted at step {step}/{total}")
        if self._on_progress is not None:
            self._on_progress(step, total)


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_dtype(name: str, device: torch.device, role: str = "model") -> torch.dtype:
    """Map a loader's dtype choice to a torch dtype; `auto` is fp16 on CUDA (fp32 for MoVQ), fp32 elsewhere."""
    if name in DTYPES:
        return DTYPES[name]
    if name != "auto":
        raise ValueError(f"Unknown dtype '{name}'. Choose one of {DTYPE_CHOICES}.")
    if device.type == "cuda" and role != "movq":
        return torch.float16
    return torch.float32
