"""fp8 weight storage: Linear and Conv2d weights kept in float8_e4m3fn, computed per layer in the model's dtype.

`store_fp8(module)` turns every nn.Linear / nn.Conv2d of a loaded model (in its compute dtype: bf16, fp16
or fp32) into an fp8-storage layer: the weight is divided by a per-output-channel scale (row max / 448,
e4m3fn's largest finite value) and stored in 1 byte per element next to that scale (`weight_scale`, fp32);
each forward upcasts the weight to the input's dtype, multiplies the scale back and runs the ordinary
linear / convolution. Biases, norms and embeddings keep the compute dtype. Weights take half the bytes of
fp16 (a quarter of fp32) and stay within e4m3fn's 3-bit mantissa of the originals (relative error <= 2^-4
per weight); the activations never pass through fp8.

The layers are the same modules with a new class (`Fp8Linear` subclasses nn.Linear), so attribute names,
hooks and the memory modes' block streaming (kandinsky_core.memory) work unchanged; the state dict gains
one `weight_scale` per converted layer.

transformers' T5 feed-forward casts its activations to `wo.weight.dtype` before `wo` (for int8 / fp32-`wo`
setups), which would push activations through fp8: its T5Dense*ActDense modules get the same forward
without that cast.
"""
from __future__ import annotations

import logging
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
CHOICE = "fp8_e4m3fn"  # the loaders' dtype choice


def _upcast(layer: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    return layer.weight.to(dtype) * layer.weight_scale.to(dtype)


class Fp8Linear(nn.Linear):
    """nn.Linear with an fp8 weight and a per-output-row scale; computes in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _upcast(self, x.dtype), self.bias)


class Fp8Conv2d(nn.Conv2d):
    """nn.Conv2d with an fp8 weight and a per-output-channel scale; computes in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _upcast(self, x.dtype), self.bias)


_FP8_CLASSES = {nn.Linear: Fp8Linear, nn.Conv2d: Fp8Conv2d}


@torch.no_grad()
def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (out, ...) -> (fp8 weight, fp32 scale of shape (out, 1, ...)) with weight ~= fp8 * scale."""
    flat = weight.detach().float().reshape(weight.shape[0], -1)  # out, in * kh * kw
    amax = flat.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (flat / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    view = (weight.shape[0],) + (1,) * (weight.ndim - 1)
    return q.reshape(weight.shape), scale.reshape(view)


def _t5_dense_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """T5DenseActDense / T5DenseGatedActDense forward without the cast to `wo.weight.dtype`."""
    if hasattr(self, "wi_0"):
        hidden_states = self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states)
    else:
        hidden_states = self.act(self.wi(hidden_states))
    return self.wo(self.dropout(hidden_states))


_T5_DENSE = ("T5DenseActDense", "T5DenseGatedActDense")
_patched_classes: dict[type, type] = {}


def _fp8_safe_class(cls: type) -> type:
    if cls not in _patched_classes:
        _patched_classes[cls] = type(f"Fp8{cls.__name__}", (cls,), {"forward": _t5_dense_forward})
    return _patched_classes[cls]


def store_fp8(module: nn.Module, skip: Iterable[str] = ()) -> nn.Module:
    """Convert `module`'s Linear / Conv2d weights to fp8 storage in place (see the module docstring).

    `skip`: qualified names of layers to keep as they are (e.g. a layer whose weight dtype the model's
    forward reads as its compute dtype). Returns `module`. Converting twice is a no-op.
    """
    skip = set(skip)
    converted = 0
    for name, layer in module.named_modules():
        if type(layer).__name__ in _T5_DENSE:
            layer.__class__ = _fp8_safe_class(type(layer))
        target = _FP8_CLASSES.get(type(layer))
        if target is None or name in skip:
            continue
        q, scale = quantize(layer.weight)
        layer.weight = nn.Parameter(q, requires_grad=False)
        layer.register_buffer("weight_scale", scale)
        layer.__class__ = target
        converted += 1
    logger.info("fp8: %d layers of %s store their weights in %s.", converted, type(module).__name__, FP8_DTYPE)
    return module


def is_fp8(module: nn.Module) -> bool:
    """Whether any layer of `module` stores its weight in fp8."""
    return any(isinstance(m, (Fp8Linear, Fp8Conv2d)) for m in module.modules())


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype fp8-stored models compute in: bf16 on CUDA (the T5 overflows fp16), fp32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def resolve_weights(name: str, device: torch.device, role: str) -> tuple[torch.dtype, bool]:
    """A loader's dtype choice -> (compute dtype, whether weights are stored in fp8).

    `fp8_e4m3fn` computes in `compute_dtype(device)`; `auto` for the Kandinsky 3 text encoder ("text_encoder")
    on CUDA is bf16 (its feed-forward overflows fp16); the rest is runtime.resolve_dtype.
    """
    from .runtime import resolve_dtype

    if name == CHOICE:
        return compute_dtype(device), True
    if name == "auto" and role == "text_encoder" and device.type == "cuda":
        return torch.bfloat16, False
    return resolve_dtype(name, device, role), False


def store_unet_fp8(unet) -> None:
    """fp8 storage for a loaded Kandinsky 3 DecoderUNet (conv_in stays: its dtype is the UNet's compute dtype)."""
    if unet.version != "3":
        raise ValueError(
            f"fp8_e4m3fn weight storage is offered for Kandinsky 3 only, but '{unet.name}' is a Kandinsky "
            f"{unet.version} UNet: choose auto, fp16, bf16 or fp32 (its 1.2 B parameters fit in fp16)."
        )
    store_fp8(unet.unet, skip=("conv_in",))
