"""The core's Runtime backed by ComfyUI: model management, progress bar, Cancel. Imported only inside ComfyUI.

Each core nn.Module is wrapped once in a `comfy.model_patcher.ModelPatcher`, so `load_models_gpu` moves it
to the GPU and evicts it (or other packs' models) by the same rules as ComfyUI's own models.
"""
from __future__ import annotations

import logging
import weakref
from typing import Iterable

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import torch
from torch import nn

logger = logging.getLogger(__name__)

# owner bundle (PriorModels / DecoderUNet / MoVQModel) -> {id(core module): its ModelPatcher}. Weak keys:
# the patchers (and ComfyUI's bookkeeping of them) go away together with the bundle.
_patchers: "weakref.WeakKeyDictionary[object, dict[int, comfy.model_patcher.ModelPatcher]]" = (
    weakref.WeakKeyDictionary()
)


class Resident(nn.Module):
    """What a ModelPatcher manages: a container around one core module.

    ModelPatcher stores bookkeeping attributes (`device`, `model_lowvram`, ...) on the module it manages;
    the container takes them, so core modules (transformers ones have a read-only `device`) stay untouched.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module


def devices(role: str) -> tuple[torch.device, torch.device]:
    """(load device, offload device) for a model of `role`: MoVQ follows ComfyUI's VAE placement."""
    if role == "movq":
        return mm.vae_device(), mm.vae_offload_device()
    return mm.get_torch_device(), mm.unet_offload_device()


def patchers(owner: object, modules: Iterable[nn.Module], role: str) -> list:
    """The ModelPatcher of each module of `owner`, created on first use."""
    table = _patchers.setdefault(owner, {})
    load, offload = devices(role)
    found = []
    for module in modules:
        patcher = table.get(id(module))
        if patcher is None or patcher.model.inner is not module:
            patcher = comfy.model_patcher.ModelPatcher(Resident(module), load_device=load, offload_device=offload)
            table[id(module)] = patcher
        found.append(patcher)
    return found


class ComfyRuntime:
    """Runtime for one node call: modules through model management, steps through a ProgressBar."""

    def __init__(self, owner: object, role: str) -> None:
        self._owner = owner
        self._role = role
        self._device = devices(role)[0]
        self._bar = None

    def device(self) -> torch.device:
        return self._device

    def load(self, modules: Iterable[nn.Module]) -> None:
        mm.throw_exception_if_processing_interrupted()
        # Whole modules only: partial (lowvram) loading needs ComfyUI's cast-weight layers, which the core's
        # plain torch layers are not; other models are still offloaded to make room.
        mm.load_models_gpu(patchers(self._owner, list(modules), self._role), force_full_load=True)

    def progress(self, step: int, total: int) -> None:
        if self._bar is None or step <= 1 or self._bar.total != total:
            self._bar = comfy.utils.ProgressBar(total)
        self._bar.update_absolute(step, total)  # the server's hook raises on Cancel
        mm.throw_exception_if_processing_interrupted()


def release(owner: object) -> None:
    """Unload `owner`'s modules to the offload device now and forget their patchers (a loader let go of it)."""
    for patcher in _patchers.pop(owner, {}).values():
        patcher.detach()
