"""Run an image network over overlapping tiles, and fall back to tiles when the device runs out of memory
(what ComfyUI's VAE nodes do for the MoVQ's role). Cancel is checked per block through the runtime.

Tiles overlap by about a quarter of their side; overlapping outputs are blended with linear ramps, so seams do
not show. Normalisation layers see one tile at a time, so a tiled result is close to, not equal to, the
whole-image one.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterable

import torch
from torch import nn

from ..runtime import Runtime

logger = logging.getLogger(__name__)

OOM_TILE_PIXELS = 512  # tile side (image pixels) after an out-of-memory error, as ComfyUI's VAE fallback


class BlockSteps:
    """Counts finished blocks as runtime progress steps: a progress bar for the stage, and a Cancel check
    (the runtime raises) after every block instead of after the whole stage."""

    def __init__(self, runtime: Runtime, blocks: Iterable[nn.Module], runs: int = 1) -> None:
        self._runtime, self._blocks = runtime, list(blocks)
        self.total, self.done = len(self._blocks) * runs, 0

    def _step(self, *_) -> None:
        self.done = min(self.done + 1, self.total)
        self._runtime.progress(self.done, self.total)

    @contextmanager
    def hooked(self):
        handles = [block.register_forward_hook(self._step) for block in self._blocks]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


def _overlap(tile: int, scale: float) -> int:
    """A quarter of the tile, in whole output cells (encode: a multiple of the 1/scale input pixels per cell)."""
    step = round(1 / scale) if scale < 1 else 1
    return tile // 4 // step * step


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    return list(range(0, size - tile, stride)) + [size - tile]


def _ramp(length: int, fade: int, first: bool, last: bool) -> torch.Tensor:
    """Blend weights along one side of a tile: rising over `fade` cells unless at the image's edge."""
    w = torch.ones(length)
    ramp = torch.arange(1, fade + 1, dtype=torch.float32) / (fade + 1)
    if not first and fade:
        w[:fade] = ramp
    if not last and fade:
        w[-fade:] = ramp.flip(0)
    return w


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, scale: float) -> torch.Tensor:
    """fn over overlapping `tile`-sized tiles of x (B, C, H, W) -> (B, C', H*scale, W*scale) float32 on the CPU.

    `scale` is fn's output size per input cell (the MoVQ factor f for decode, 1/f for encode)."""
    b, _, h, w = x.shape
    overlap = _overlap(tile, scale)
    ys, xs = _starts(h, tile, tile - overlap), _starts(w, tile, tile - overlap)
    out = weight = None
    fade = int(overlap * scale)
    for y in ys:
        for x0 in xs:
            piece = fn(x[:, :, y : y + tile, x0 : x0 + tile]).float().cpu()
            if out is None:
                out = torch.zeros(b, piece.shape[1], round(h * scale), round(w * scale))
                weight = torch.zeros(1, 1, *out.shape[-2:])
            ph, pw = piece.shape[-2:]
            oy, ox = round(y * scale), round(x0 * scale)
            blend = _ramp(ph, fade, y == 0, y + tile >= h)[:, None] * _ramp(pw, fade, x0 == 0, x0 + tile >= w)
            out[:, :, oy : oy + ph, ox : ox + pw] += piece * blend
            weight[:, :, oy : oy + ph, ox : ox + pw] += blend
    return out / weight


def tile_count(h: int, w: int, tile: int, scale: float) -> int:
    stride = tile - _overlap(tile, scale)
    return len(_starts(h, tile, stride)) * len(_starts(w, tile, stride))


def whole_or_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int, oom_tile: int,
                   scale: float, blocks: list[nn.Module], runtime: Runtime, what: str) -> torch.Tensor:
    """fn(x) as float32 on the CPU: whole when tile is 0, retried in `oom_tile` tiles if the device runs out of
    memory; in `tile`-sized tiles otherwise. Cancel is checked after every block of every tile."""
    if tile <= 0:
        try:
            with BlockSteps(runtime, blocks).hooked():
                return fn(x).float().cpu()
        except torch.OutOfMemoryError:
            logger.warning("%s ran out of device memory: retrying in tiles (set tile_size to start tiled).", what)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            tile = oom_tile
    runs = tile_count(x.shape[-2], x.shape[-1], tile, scale)
    with BlockSteps(runtime, blocks, runs).hooked():
        return tiled(fn, x, tile, scale)
