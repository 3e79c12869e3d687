"""Pick the host runtime for a node call: ComfyUI's model management inside ComfyUI, plain torch outside.

Outside ComfyUI the device is KANDINSKY_DEVICE (e.g. "cpu", "cuda:1") or the core's default, and
`set_progress_hook` / `interrupt` stand in for ComfyUI's progress bar and Cancel button.

A bundle's `memory_mode` (chosen in its loader) picks the residency: "auto" is ComfyUI's model management
inside ComfyUI and "gpu" (all on the device) outside; the others are kandinsky_core.memory's modes.
"""
from __future__ import annotations

import os
import threading
from typing import Callable

import torch

from ..kandinsky_core import fp8
from ..kandinsky_core.memory import MEMORY_MODES
from ..kandinsky_core.runtime import Interrupted, LocalRuntime, Runtime, default_device
from .paths import in_comfyui

DEVICE_ENV_VAR = "KANDINSKY_DEVICE"
MEMORY_MODE_CHOICES = ["auto", *MEMORY_MODES]

_hook: Callable[[int, int], None] | None = None
_interrupt = threading.Event()


def set_progress_hook(hook: Callable[[int, int], None] | None) -> None:
    """Outside ComfyUI: call `hook(step, total)` after every sampling step (it may raise to stop the run)."""
    global _hook
    _hook = hook


def interrupt() -> None:
    """Outside ComfyUI: stop the running stage after its current step (thread-safe).

    A request made while no stage runs is dropped when the next node call starts (`runtime_for`), as
    ComfyUI resets its interrupt flag per prompt: a stale Cancel never aborts a later run.
    """
    _interrupt.set()


def _local_progress(step: int, total: int) -> None:
    if _interrupt.is_set():
        _interrupt.clear()
        raise Interrupted(f"Kandinsky run interrupted at step {step}/{total}")
    if _hook is not None:
        _hook(step, total)


def _local_device() -> torch.device:
    name = os.environ.get(DEVICE_ENV_VAR)
    return torch.device(name) if name else default_device()


def load_device(role: str) -> torch.device:
    """The device a model of `role` ("prior", "unet", "movq") runs on; picks the `auto` dtype."""
    if in_comfyui():
        from . import comfy_runtime

        return comfy_runtime.devices(role)[0]
    return _local_device()


def model_dtype(name: str, role: str) -> torch.dtype:
    """A loader's dtype choice for a model of `role`: `auto` inside ComfyUI is ComfyUI's choice (its dtype
    flags count), elsewhere the core's per-device default."""
    if name == "auto" and in_comfyui():
        from . import comfy_runtime

        return comfy_runtime.auto_dtype(role)
    return fp8.resolve_weights(name, load_device(role), role)[0]


def weight_dtype(name: str, role: str) -> tuple[torch.dtype, bool]:
    """A loader's dtype choice -> (compute dtype, weights stored in fp8): `fp8_e4m3fn` (Kandinsky 3's T5 and
    UNet) as kandinsky_core.fp8 says, everything else as `model_dtype`."""
    if name == fp8.CHOICE:
        return fp8.resolve_weights(name, load_device(role), role)
    return model_dtype(name, role), False


def check_memory_mode(mode: str) -> str:
    """A loader's memory_mode, validated (API workflows skip the editor's combo check)."""
    if mode not in MEMORY_MODE_CHOICES:
        raise ValueError(f"Unknown memory_mode {mode!r}. Choose one of {MEMORY_MODE_CHOICES}.")
    return mode


def runtime_for(owner: object, role: str) -> Runtime:
    """The runtime for one node call on `owner`'s modules (a PriorModels, DecoderUNet or MoVQModel)."""
    mode = check_memory_mode(getattr(owner, "memory_mode", "auto"))
    if in_comfyui():
        from . import comfy_runtime

        return comfy_runtime.ComfyRuntime(owner, role, mode)
    _interrupt.clear()  # a node call starts: a Cancel from before it belongs to no run
    return LocalRuntime(_local_device(), on_progress=_local_progress, memory_mode="gpu" if mode == "auto" else mode)


def output_device() -> torch.device:
    """Where IMAGE / MASK / LATENT outputs go: ComfyUI's intermediate device, else the CPU."""
    if in_comfyui():
        import comfy.model_management

        return comfy.model_management.intermediate_device()
    return torch.device("cpu")


def release(owners: tuple) -> None:
    """A loader let go of these bundles: inside ComfyUI unload them from the GPU now (else refcounting frees them)."""
    if in_comfyui():
        from . import comfy_runtime

        for owner in owners:
            comfy_runtime.release(owner)
