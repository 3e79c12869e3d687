"""Optional speed-ups for loaded models: channels-last convolutions and torch.compile.

Both compute the same function (channels-last only changes the memory layout; compile fuses
element-wise work, which moves results by floating-point round-off only). Channels-last converts the
weights in place; compile returns a new bundle whose module is a torch.compile wrapper sharing the
weights. Measured effects are in benchmarks/RESULTS.md.

* channels-last stores 4-D conv weights as NHWC, so cuDNN / oneDNN pick their NHWC kernels and the
  activations stay NHWC through the element-wise ops. Eager CUDA GroupNorm works on NCHW and converts
  back and forth; under torch.compile the layouts are planned as a whole.
* torch.compile traces `forward` on the first call of every new input shape (tens of seconds for the
  UNet), later calls reuse the compiled code; mode "reduce-overhead" also records CUDA graphs, which
  removes the per-kernel launch cost that dominates small steps. Not for modules streamed by the lowvram
  memory mode (their forward hooks move weights), and pointless for a single run of a shape.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch
from torch import nn

from . import memory
from .components import DecoderUNet, MoVQModel, PriorModels

logger = logging.getLogger(__name__)

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class SpeedOptions:
    """What `optimize_*` applies (all off = the plain eager models)."""

    channels_last: bool = False  # NHWC conv weights (UNet and MoVQ)
    compile: bool = False  # torch.compile the UNet and the prior transformer
    compile_mode: str | None = None  # torch.compile mode; "reduce-overhead" adds CUDA graphs

    def __post_init__(self) -> None:
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"Unknown compile mode {self.compile_mode!r}; choose one of {list(COMPILE_MODES)}.")

    @property
    def label(self) -> str:
        parts = (["compile" + (f"({self.compile_mode})" if self.compile_mode else "")] if self.compile else [])
        parts += ["channels_last"] if self.channels_last else []
        return "+".join(parts) or "eager"


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store every 4-D parameter/buffer of `module` channels-last (NHWC), in place."""
    return module.to(memory_format=torch.channels_last)


def to_contiguous(module: nn.Module) -> nn.Module:
    """Undo `to_channels_last` (NCHW weights), in place."""
    return module.to(memory_format=torch.contiguous_format)


def compile_module(module: nn.Module, mode: str | None = None) -> nn.Module:
    """A torch.compile wrapper of `module` (shares its parameters; the module itself stays eager).

    The wrapper forwards attribute access (config, variant, ...) to the module; its state-dict keys carry
    an `_orig_mod.` prefix, so save the original module, not the wrapper.
    """
    if memory.is_streamed(module):
        raise ValueError("This model is streamed by the lowvram memory mode; torch.compile cannot trace its "
                         "weight-moving hooks. Use the gpu or model_offload mode to compile.")
    if mode not in COMPILE_MODES:
        raise ValueError(f"Unknown compile mode {mode!r}; choose one of {list(COMPILE_MODES)}.")
    compiled = torch.compile(module, mode=None if mode == "default" else mode, dynamic=False)
    return _NewStepPerCall(compiled) if mode in CUDA_GRAPH_MODES else compiled


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


class _NewStepPerCall(nn.Module):
    """Starts a new CUDA-graph step before every call, so the sampling loops (which keep the previous
    output alive while calling again) replay one graph instead of growing the graph tree; an output is
    therefore only valid until the next call, which is how the loops use it."""

    def __init__(self, compiled: nn.Module):
        super().__init__()
        self.compiled = compiled

    def forward(self, *args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.compiled, name)  # config, variant, ... of the wrapped model


def optimize_decoder(unet: DecoderUNet, options: SpeedOptions) -> DecoderUNet:
    """The decoder bundle with `options` applied: channels-last in place, compile as a wrapper (new bundle)."""
    (to_channels_last if options.channels_last else to_contiguous)(_eager(unet.unet))
    if options.compile:
        unet = dataclasses.replace(unet, unet=compile_module(_eager(unet.unet), options.compile_mode))
    logger.info("Decoder UNet %s: %s", unet.name, options.label)
    return unet


def optimize_prior(models: PriorModels, options: SpeedOptions) -> PriorModels:
    """The prior bundle with its transformer compiled if asked (no convolutions: channels-last does not apply)."""
    if options.compile:
        models = dataclasses.replace(models, prior=compile_module(_eager(models.prior), options.compile_mode))
    return models


def optimize_movq(movq: MoVQModel, options: SpeedOptions) -> MoVQModel:
    """Channels-last MoVQ convolutions if asked, in place (the MoVQ runs once per image; it is not compiled)."""
    (to_channels_last if options.channels_last else to_contiguous)(movq.movq)
    return movq


def _eager(module: nn.Module) -> nn.Module:
    """The plain module behind a compile wrapper."""
    if isinstance(module, _NewStepPerCall):
        module = module.compiled
    return getattr(module, "_orig_mod", module)
