"""Strict, shape-checked state-dict loading into modules built on the meta device.

Typical use (no full-size model is ever allocated twice):

    with empty_weights():
        unet = UNet(config)                    # parameters on meta, buffers real
    load_strict(unet, state_dict, "unet", "2.2 inpaint", dtype=torch.float16)
"""
import logging
from contextlib import contextmanager
from itertools import chain
from typing import Iterator

import torch
from torch import nn

logger = logging.getLogger(__name__)

SHOW = 5  # keys listed per kind of mismatch


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes differ from what the module expects."""


def state_dict_shapes(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, for variant-detection tables and messages."""
    return {k: tuple(v.shape) for k, v in state_dict.items()}


@contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules with parameters on the meta device and buffers real.

    Buffers (position ids, frequency tables) are small and often computed at construction without being
    saved (`persistent=False`), so they are kept; parameters come from the checkpoint via `load_strict`.
    Patches `nn.Module.register_parameter` for the duration: not for concurrent use across threads.
    """
    original = nn.Module.register_parameter

    def register_on_meta(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(self, name, param)
        if param is not None and not param.is_meta:
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _listing(items: list[str]) -> str:
    more = f", ... and {len(items) - SHOW} more" if len(items) > SHOW else ""
    return ", ".join(items[:SHOW]) + more


def check_state_dict(module: nn.Module, state_dict: dict[str, torch.Tensor], component: str, variant: str) -> None:
    """Raise CheckpointMismatchError unless `state_dict` has exactly the module's keys and shapes."""
    expected = state_dict_shapes(module.state_dict())
    got = state_dict_shapes(state_dict)
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    mismatched = [
        f"{k}: checkpoint {_fmt(got[k])} vs expected {_fmt(expected[k])}"
        for k in expected
        if k in got and got[k] != expected[k]
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [
        f"The checkpoint does not match the {component!r} model built as variant {variant!r} "
        f"(model expects {len(expected)} tensors, checkpoint has {len(got)})."
    ]
    if missing:
        lines.append(f"  {len(missing)} missing keys (expected, absent from the checkpoint): {_listing(missing)}")
    if unexpected:
        lines.append(
            f"  {len(unexpected)} unexpected keys (in the checkpoint, unknown to the model): {_listing(unexpected)}"
        )
    if mismatched:
        lines.append(f"  {len(mismatched)} shape mismatches: {_listing(mismatched)}")
    lines.append(
        "Hint: is this the right model folder for this loader (e.g. a prior folder given to a decoder loader, "
        "an inpaint or ControlNet UNet where a plain one is expected, 2.1 weights for a 2.2 model)? "
        "If the folder is right, the download may be corrupt or incomplete: re-download it."
    )
    raise CheckpointMismatchError("\n".join(lines))


def meta_tensors(module: nn.Module) -> list[str]:
    """Names of parameters and buffers (persistent or not) still on the meta device."""
    named = chain(module.named_parameters(remove_duplicate=False), module.named_buffers(remove_duplicate=False))
    return [name for name, t in named if t.is_meta]


def materialize(
    module: nn.Module,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    component: str = "model",
) -> nn.Module:
    """Check nothing is left on the meta device, then cast floating tensors to `dtype` and move to `device`."""
    leftover = meta_tensors(module)
    if leftover:
        raise RuntimeError(
            f"{len(leftover)} tensors of {component!r} are still on the meta device after loading "
            f"({_listing(leftover)}): they are neither in the checkpoint nor computed at construction. "
            "Build the module inside `empty_weights()` (buffers real) rather than under torch.device('meta')."
        )
    if dtype is not None or device is not None:
        module.to(device=device, dtype=dtype)  # casts floating-point tensors only
    return module


def _has_meta(module: nn.Module) -> bool:
    return any(t.is_meta for t in chain(module.parameters(), module.buffers()))


def load_strict(
    module: nn.Module,
    state_dict: dict[str, torch.Tensor],
    component: str,
    variant: str,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> None:
    """Load `state_dict` into `module` after checking keys and shapes; optionally cast and move.

    A module with meta tensors takes the checkpoint tensors directly (`assign=True`, no second copy),
    each converted to the module's dtype (or `dtype` for floating tensors) and `device`; otherwise the
    values are copied in and the module is cast/moved afterwards. Either way nothing may stay on meta.
    """
    check_state_dict(module, state_dict, component, variant)
    if _has_meta(module):
        expected = module.state_dict()
        converted = {}
        for key, value in state_dict.items():
            want = expected[key].dtype
            if dtype is not None and want.is_floating_point:
                want = dtype
            converted[key] = value.to(device=device if device is not None else value.device, dtype=want)
        module.load_state_dict(converted, strict=True, assign=True)
    else:
        module.load_state_dict(state_dict, strict=True)
    materialize(module, dtype, device, component)
    logger.debug("Loaded %d tensors into %s (%s)", len(state_dict), component, variant)

