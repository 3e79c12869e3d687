"""The core's Runtime backed by ComfyUI: model management, progress bar, Cancel. Imported only inside ComfyUI.

Each core nn.Module is wrapped once in a `comfy.model_patcher.ModelPatcher`, so `load_models_gpu` moves it
to the GPU and evicts it (or other packs' models) by the same rules as ComfyUI's own models.

A bundle's memory mode (chosen in its loader) changes that:
* "auto", "gpu": as above (ComfyUI decides what stays on the GPU).
* "model_offload": loaded through ComfyUI as above, then unloaded again (as `free_memory` unloads a model)
  when the stage loads other models and when the node call ends.
* "lowvram": ComfyUI frees room for one block plus the always-resident layers (`free_memory`, which unloads
  only what it must), then kandinsky_core.memory streams the blocks to ComfyUI's device one at a time; the
  resident layers go back to the CPU when the node call ends. No ModelPatcher: ComfyUI's partial loading
  needs its own cast-weight layers.

The node call ends when the stage function returns and drops its runtime (CPython frees it at once; after
an error, when the traceback goes): a `weakref.finalize` on the runtime does the end-of-call unloading.
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

from ..kandinsky_core import fp8, memory

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
    `resident(module)` makes one of a subclass named after the core module, which ComfyUI's log names
    ("Requested to load KandinskyUNet").
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module


_resident_classes: dict[str, type] = {}


def resident(module: nn.Module) -> Resident:
    """A Resident around `module`, of a Resident subclass named Kandinsky<core class> for ComfyUI's log."""
    name = type(module).__name__
    name = name if name.startswith("Kandinsky") else "Kandinsky" + name
    cls = _resident_classes.get(name)
    if cls is None:
        cls = _resident_classes[name] = type(name, (Resident,), {"__module__": __name__})
    return cls(module)


def devices(role: str) -> tuple[torch.device, torch.device]:
    """(load device, offload device) for a model of `role`: MoVQ follows ComfyUI's VAE placement."""
    if role == "movq":
        return mm.vae_device(), mm.vae_offload_device()
    return mm.get_torch_device(), mm.unet_offload_device()


_OUR_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _text_encoder_flag_dtype() -> torch.dtype | None:
    """The dtype a --fp16/--bf16/--fp32-text-enc flag asks for (ComfyUI's own default, fp16 everywhere, would
    overflow the T5 feed-forward and is slow on the CPU, so without a flag the core decides)."""
    from comfy.cli_args import args

    flags = {"fp16_text_enc": torch.float16, "bf16_text_enc": torch.bfloat16, "fp32_text_enc": torch.float32}
    return next((dtype for flag, dtype in flags.items() if getattr(args, flag, False)), None)


def auto_dtype(role: str) -> torch.dtype:
    """ComfyUI's dtype choice for a model of `role` on its device, flags included (--force-fp32, --bf16-unet,
    --fp16-vae, ...): the prior and UNet as a diffusion model, MoVQ as a VAE (fp32 unless a VAE flag says
    otherwise). A choice the core cannot run (fp8, fp64) falls back to fp32."""
    device = devices(role)[0]
    if role == "movq":
        dtype = mm.vae_dtype(device)
    elif role == "text_encoder":  # Kandinsky 3's T5: ComfyUI's text encoder flags, else the core's choice
        dtype = _text_encoder_flag_dtype() or fp8.resolve_weights("auto", device, role)[0]
    else:
        dtype = mm.unet_dtype(device, supported_dtypes=list(_OUR_DTYPES))
    if dtype not in _OUR_DTYPES:
        logger.warning("ComfyUI chose %s for the Kandinsky %s; it runs in float32 instead.", dtype, role)
        return torch.float32
    return dtype


def patchers(owner: object, modules: Iterable[nn.Module], role: str) -> list:
    """The ModelPatcher of each module of `owner`, created on first use."""
    table = _patchers.setdefault(owner, {})
    load, offload = devices(role)
    found = []
    for module in modules:
        patcher = table.get(id(module))
        if patcher is None or patcher.model.inner is not module:
            patcher = comfy.model_patcher.ModelPatcher(resident(module), load_device=load, offload_device=offload)
            table[id(module)] = patcher
        found.append(patcher)
    return found


def unload(loaded: Iterable) -> int:
    """Unload these ModelPatchers' models to their offload device now; returns how many it unloaded.

    Only public model management: `free_memory` with everything else kept loaded (it compares its entries
    with `LoadedModel`s by patcher), per load device; it unloads them whole, as when it makes room."""
    wanted = {id(p): p for p in loaded}
    loaded_now = [p for p in mm.loaded_models() if p is not None]
    keep = [mm.LoadedModel(p) for p in loaded_now if id(p) not in wanted]
    count = 0
    for device in {p.load_device for p in loaded_now if id(p) in wanted}:
        count += len(mm.free_memory(1e30, device, keep_loaded=keep))
    return count


def _nbytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def lowvram_memory(modules: list[nn.Module]) -> int:
    """Device bytes lowvram needs for `modules`: their resident layers, their largest block, inference room."""
    resident, block = 0, 0
    for module in modules:
        units = memory.plan_units(module)
        resident += _nbytes(module) - sum(_nbytes(u) for u in units)
        block = max([block] + [_nbytes(u) for u in units])
    return resident + block + int(mm.minimum_inference_memory())


def _end_of_call(mode: str, device: torch.device, held: list) -> None:
    if mode == "model_offload":
        unload(held)
    else:  # lowvram: the streamed modules' resident layers back to the CPU
        memory.manager_for(device, "lowvram").offload_all()
    held.clear()


class ComfyRuntime:
    """Runtime for one node call: modules through model management (per memory mode), steps through a
    ProgressBar."""

    def __init__(self, owner: object, role: str, memory_mode: str = "auto") -> None:
        self._owner = owner
        self._role = role
        self._mode = memory_mode
        self._device = devices(role)[0]
        self._bar = None
        self._preview = None  # (format, PIL image, max size) for the next progress update
        self._previewer = False  # ComfyUI's latent previewer for the owner's latents, made on first use
        self._held: list = []  # model_offload: the patchers this call loaded last
        if memory_mode in ("model_offload", "lowvram"):
            weakref.finalize(self, _end_of_call, memory_mode, self._device, self._held).atexit = False

    def device(self) -> torch.device:
        return self._device

    @property
    def memory_mode(self) -> str:
        return self._mode

    def load(self, modules: Iterable[nn.Module]) -> None:
        mm.throw_exception_if_processing_interrupted()
        modules = list(modules)
        if self._mode == "lowvram":
            mm.free_memory(lowvram_memory(modules), self._device)  # unloads other models only if short of room
            memory.manager_for(self._device, "lowvram").load(modules)
            return
        wanted = patchers(self._owner, modules, self._role)
        if self._mode == "model_offload":
            unload([p for p in self._held if all(p is not w for w in wanted)])
            self._held[:] = wanted
        # Whole modules only: partial (lowvram) loading needs ComfyUI's cast-weight layers, which the core's
        # plain torch layers are not; other models are still offloaded to make room.
        mm.load_models_gpu(wanted, force_full_load=True)

    def progress(self, step: int, total: int) -> None:
        if self._bar is None or step <= 1 or self._bar.total != total:
            self._bar = comfy.utils.ProgressBar(total)
        preview, self._preview = self._preview, None
        self._bar.update_absolute(step, total, preview)  # the server's hook raises on Cancel when it is called ...
        mm.throw_exception_if_processing_interrupted()  # ... which since 0.33 is at most every 100 ms: check here

    def preview(self, latents: torch.Tensor) -> None:
        """Render these latents (B, 4, h, w; the first is shown) for the next `progress` call, as KSampler's
        previews: ComfyUI's previewer with the latent -> RGB map fitted from the UNet's MoVQ. Nothing when the
        server's preview method is off or the UNet has no paired MoVQ."""
        if self._previewer is False:
            self._previewer = _latent_previewer(self._owner, self._device) if self._role == "unet" else None
        if self._previewer is not None:
            self._preview = self._previewer.decode_latent_to_preview_image("JPEG", latents.float())


def _latent_previewer(owner: object, device: torch.device):
    try:
        import latent_preview
    except ImportError:  # a host without ComfyUI's preview module: no previews
        return None

    from . import previews
    from .comfy_bridge import KandinskyLatentFormat

    rgb = previews.latent_rgb(owner)
    return None if rgb is None else latent_preview.get_previewer(device, KandinskyLatentFormat(rgb))


def release(owner: object) -> None:
    """Unload `owner`'s modules to the offload device now and forget their patchers (a loader let go of it)."""
    for patcher in _patchers.pop(owner, {}).values():
        patcher.detach()
    for module in owner.modules():
        memory.unstream(module)  # lowvram: hooks off, every tensor back on the CPU
