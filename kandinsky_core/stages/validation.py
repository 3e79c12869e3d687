"""Range checks for user-facing stage arguments, with messages that say how to fix the value."""
from __future__ import annotations

import math

import torch

# Most steps a stage takes: with the repos' steps_offset 1, 1000 "leading" steps would reach timestep 1000,
# one past the 1000-step training schedule (the nodes' steps widgets use the same maximum).
MAX_STEPS = 999


def check_steps(steps: int, minimum: int = 1, what: str = "steps") -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < minimum or steps > MAX_STEPS:
        raise ValueError(f"{what} must be an integer from {minimum} to {MAX_STEPS}, got {steps!r}.")


def check_guidance(guidance_scale: float) -> None:
    if not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValueError(
            f"guidance_scale must be a finite number >= 0 (values <= 1 turn guidance off), got {guidance_scale!r}."
        )


def check_strength(value: float, name: str) -> None:
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(
            f"{name} must be in (0, 1], got {value!r}: 1.0 runs every step from pure noise, smaller values keep "
            "more of the input."
        )


def check_runs_a_step(steps: int, strength: float, name: str) -> None:
    if int(steps * strength) < 1:
        raise ValueError(
            f"{name}={strength} with {steps} steps runs floor({steps} x {strength}) = 0 steps: raise {name} or steps."
        )


# IMAGE and MASK values are 0..1; values beyond this margin are refused as a wrong scale (e.g. 0..255), while
# the small overshoot of sharpening or upscaling filters passes (images are encoded as they are, masks clamped).
PIXEL_RANGE = (-0.5, 1.5)


def check_pixels(x: torch.Tensor, what: str) -> None:
    """Refuse an IMAGE or MASK tensor with NaN / inf values or values far outside 0..1 (see PIXEL_RANGE)."""
    if x.numel() == 0:
        raise ValueError(f"The {what} is empty (shape {tuple(x.shape)}).")
    finite = x.isfinite() if x.is_floating_point() else None
    if finite is not None and not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"The {what} contains {bad} NaN or infinite values (of {x.numel()}): the node that made it failed "
            "numerically; fix that node's settings or use another image."
        )
    lo, hi = float(x.min()), float(x.max())
    if lo < PIXEL_RANGE[0] or hi > PIXEL_RANGE[1]:
        scale = " It looks like 0..255 values: divide by 255." if 1.5 < hi <= 255.0 and lo >= -0.5 else ""
        raise ValueError(
            f"The {what} has values from {lo:g} to {hi:g}, far outside 0..1 (ComfyUI's IMAGE and MASK range; values "
            f"beyond [{PIXEL_RANGE[0]}, {PIXEL_RANGE[1]}] are refused).{scale}"
        )
