"""Memory modes: where a runtime keeps its models between and during stages.

* "gpu": every model the stages load stays on the compute device (fastest; most memory).
* "model_offload": a model is on the device only while a stage that needs it runs; loading the next
  stage's models parks the previous ones on the CPU (like diffusers' enable_model_cpu_offload).
* "lowvram": as model_offload, and inside a model only one block at a time is on the device: the
  items of its nn.ModuleLists (UNet resnets/attentions, prior and CLIP transformer layers, MoVQ levels)
  are copied in by a forward pre-hook and dropped by a forward hook. Peak device memory is then the
  small always-resident layers, one block and the activations (a 1024x1024 Kandinsky 2.2 render fits in
  well under 8 GiB), at the price of one host-to-device copy of the weights per forward.

Parking keeps a CPU master copy of every tensor and swaps `param.data` between the master and a device
copy, so sending a model back to the CPU costs nothing (weights are never written during inference).
lowvram pins its masters (CUDA only) so the per-block copies are asynchronous: no host sync in the
sampling loop. Streaming hooks cannot be traced by torch.compile; do not compile a streamed model.

Use from the core through `LocalRuntime(device, memory_mode=...)`. A host with its own model manager
(ComfyUI) can call `stream(module, device)` / `unstream(module)` directly.
"""
from __future__ import annotations

import logging
import threading
import weakref
from typing import Iterable

import torch
from torch import nn

logger = logging.getLogger(__name__)

MEMORY_MODES = ("gpu", "model_offload", "lowvram")
DEFAULT_UNIT_PARAMS = 64_000_000  # lowvram: a block larger than this is split into its children


def _tensors(module: nn.Module, recurse: bool) -> Iterable[tuple[nn.Module, bool, str, torch.Tensor]]:
    owners = module.modules() if recurse else [module]
    for owner in owners:
        for name, p in owner._parameters.items():
            if p is not None:
                yield owner, True, name, p
        for name, b in owner._buffers.items():
            if b is not None:
                yield owner, False, name, b


class _Parked:
    """CPU master copies of a set of tensors; `to(device)` installs device copies, `park()` the masters."""

    def __init__(self, entries: list[tuple[nn.Module, bool, str, torch.Tensor]], pin: bool):
        self.entries = []
        for owner, is_param, name, tensor in entries:
            master = tensor.detach().to("cpu")
            if pin and not master.is_pinned():
                try:
                    master = master.pin_memory()
                except RuntimeError as err:  # no CUDA driver, or the host refuses more page-locked memory
                    logger.warning("Could not pin %s for streaming (%s); copies will be synchronous.", name, err)
                    pin = False
            # weak: the registries below are keyed weakly by the model, which must not be kept alive from here
            self.entries.append((weakref.ref(owner), is_param, name, master))
        self.on_device = False
        self._set(lambda master: master)

    def _set(self, make) -> None:
        for owner_ref, is_param, name, master in self.entries:
            owner = owner_ref()
            if owner is None:
                continue
            if is_param:
                owner._parameters[name].data = make(master)
            else:
                owner._buffers[name] = make(master)

    def to(self, device: torch.device) -> None:
        if device.type != "cpu":
            self._set(lambda master: master.to(device, non_blocking=master.is_pinned()))
        self.on_device = True

    def park(self) -> None:
        self._set(lambda master: master)
        self.on_device = False

    @property
    def numel(self) -> int:
        return sum(m.numel() for *_, m in self.entries)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _split(module: nn.Module, max_params: int) -> list[nn.Module]:
    """Units for one block: the block itself if small enough, else its children (recursively)."""
    n = _count(module)
    if n == 0:
        return []
    if n <= max_params or not any(True for _ in module.children()):
        return [module]
    units = []
    for child in module.children():
        items = list(child) if isinstance(child, nn.ModuleList) else [child]
        for item in items:
            units += _split(item, max_params)
    return units


def plan_units(module: nn.Module, max_params: int = DEFAULT_UNIT_PARAMS) -> list[nn.Module]:
    """The blocks lowvram streams: items of every nn.ModuleList in `module` (split while > max_params).

    Modules outside ModuleLists (embeddings, projections, conv_in/out, norms) stay resident: forward code
    reads some of their weights directly (e.g. `conv_in.weight.dtype`), which a streamed block must not be.
    """
    units = []
    for child in module.children():
        if isinstance(child, nn.ModuleList):
            for item in child:
                units += _split(item, max_params)
        else:
            units += plan_units(child, max_params)
    return units


class _Stream:
    """lowvram state of one module: per-unit parked weights with hooks, plus its resident remainder."""

    def __init__(self, module: nn.Module, device: torch.device, max_params: int, stats: "StreamStats"):
        self.device = device
        self.stats = stats
        self.units = plan_units(module, max_params)
        unit_entries = [list(_tensors(u, True)) for u in self.units]
        in_units = {id(e[3]) for entries in unit_entries for e in entries}
        rest = [e for e in _tensors(module, True) if id(e[3]) not in in_units]
        pin = device.type == "cuda"
        self.parked = [_Parked(entries, pin) for entries in unit_entries]
        self.residents = _Parked(rest, pin=False)
        self.hooks = []
        for unit, parked in zip(self.units, self.parked):
            self.hooks.append(unit.register_forward_pre_hook(self._pre(parked, stats)))
            self.hooks.append(unit.register_forward_hook(self._post(parked, stats), always_call=True))

    def _pre(self, parked: _Parked, stats: "StreamStats"):
        def hook(_module, _args):
            parked.to(self.device)
            stats.loaded += 1
            stats.peak_loaded = max(stats.peak_loaded, stats.loaded)
            stats.copies += 1
        return hook

    @staticmethod
    def _post(parked: _Parked, stats: "StreamStats"):
        def hook(_module, _args, _output):
            parked.park()
            stats.loaded -= 1
        return hook

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        for parked in self.parked:
            parked.park()
        self.residents.park()


class StreamStats:
    """Counters of the lowvram hooks (for tests and logging): blocks on the device now and at most."""

    def __init__(self) -> None:
        self.loaded = 0
        self.peak_loaded = 0
        self.copies = 0


_STREAMS: "weakref.WeakKeyDictionary[nn.Module, _Stream]" = weakref.WeakKeyDictionary()
_OFFLOADED: "weakref.WeakKeyDictionary[nn.Module, _Parked]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def stream(module: nn.Module, device: torch.device | str, max_unit_params: int = DEFAULT_UNIT_PARAMS,
           stats: StreamStats | None = None) -> list[nn.Module]:
    """Stream `module`'s blocks to `device` one at a time during its forward (lowvram); returns the blocks.

    The resident remainder is left parked on the CPU: `load_residents(module)` puts it on the device.
    Calling it again on a streamed module is a no-op. Undo with `unstream`.
    """
    device = torch.device(device)
    with _LOCK:
        if module in _STREAMS:
            return _STREAMS[module].units
        _restore(module)
        state = _Stream(module, device, max_unit_params, stats or StreamStats())
        _STREAMS[module] = state
    logger.info("lowvram: streaming %d blocks (%.0fM parameters) of %s to %s; %.0fM parameters resident.",
                len(state.units), sum(p.numel for p in state.parked) / 1e6, type(module).__name__, device,
                state.residents.numel / 1e6)
    return state.units


def unstream(module: nn.Module) -> None:
    """Remove lowvram hooks; every tensor of `module` is back on the CPU."""
    with _LOCK:
        state = _STREAMS.pop(module, None)
    if state is not None:
        state.remove()


def is_streamed(module: nn.Module) -> bool:
    return module in _STREAMS


def stream_stats(module: nn.Module) -> StreamStats | None:
    """The hook counters of a streamed module (None if not streamed)."""
    state = _STREAMS.get(module)
    return None if state is None else state.stats


def _restore(module: nn.Module) -> None:
    """Undo any parking or streaming so that `module.to(...)` behaves normally (tensors on the CPU)."""
    state = _STREAMS.pop(module, None)
    if state is not None:
        state.remove()
    parked = _OFFLOADED.pop(module, None)
    if parked is not None:
        parked.park()


class MemoryManager:
    """Moves the modules a runtime loads between the compute device and the CPU, per memory mode."""

    def __init__(self, device: torch.device | str, mode: str = "gpu", max_unit_params: int = DEFAULT_UNIT_PARAMS):
        if mode not in MEMORY_MODES:
            raise ValueError(f"Unknown memory mode {mode!r}. Choose one of {list(MEMORY_MODES)}.")
        self.device = torch.device(device)
        self.mode = mode
        self.max_unit_params = max_unit_params
        self._loaded: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()

    def load(self, modules: Iterable[nn.Module]) -> None:
        """Make `modules` usable on the device; in the offload modes park every other module this manager loaded."""
        modules = list(modules)
        wanted = {id(m) for m in modules}
        if self.mode != "gpu":
            for other in list(self._loaded):
                if id(other) not in wanted:
                    self._park(other)
        for module in modules:
            {"gpu": self._resident, "model_offload": self._offload, "lowvram": self._stream}[self.mode](module)
            self._loaded.add(module)

    def offload_all(self) -> None:
        """Send every module this manager loaded back to the CPU (e.g. at the end of a workflow)."""
        for module in list(self._loaded):
            self._park(module)
            if self.mode == "gpu":
                module.to("cpu")
        self._loaded = weakref.WeakSet()

    def on_device(self, module: nn.Module) -> bool:
        """Whether `module`'s (resident) weights are currently meant to be on the device."""
        if module in _STREAMS:
            return _STREAMS[module].residents.on_device
        if module in _OFFLOADED:
            return _OFFLOADED[module].on_device
        return module in self._loaded

    def _resident(self, module: nn.Module) -> None:
        if module in _STREAMS or module in _OFFLOADED:
            _restore(module)
        module.to(self.device)

    def _offload(self, module: nn.Module) -> None:
        if module in _STREAMS:
            _restore(module)
        parked = _OFFLOADED.get(module)
        if parked is None:
            parked = _OFFLOADED[module] = _Parked(list(_tensors(module, True)), pin=False)
        if not parked.on_device:
            parked.to(self.device)

    def _stream(self, module: nn.Module) -> None:
        if module not in _STREAMS:
            _restore(module)
            stream(module, self.device, self.max_unit_params)
        state = _STREAMS[module]
        if not state.residents.on_device:
            state.residents.to(self.device)

    @staticmethod
    def _park(module: nn.Module) -> None:
        if module in _STREAMS:
            _STREAMS[module].residents.park()
        elif module in _OFFLOADED:
            _OFFLOADED[module].park()


_MANAGERS: dict[tuple[str, str], MemoryManager] = {}


def manager_for(device: torch.device | str, mode: str = "gpu") -> MemoryManager:
    """The process-wide manager of (device, mode): runtimes made per node call share what is resident."""
    key = (str(torch.device(device)), mode)
    with _LOCK:
        if key not in _MANAGERS:
            _MANAGERS[key] = MemoryManager(device, mode)
        return _MANAGERS[key]
