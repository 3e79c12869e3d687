"""Range checks for user-facing stage arguments, with messages that say how to fix the value."""
from __future__ import annotations

import math


def check_steps(steps: int, minimum: int = 1, what: str = "steps") -> None:
    if not isinstance(steps, int) or steps < minimum or steps > 1000:
        raise ValueError(f"{what} must be an integer from {minimum} to 1000, got {steps!r}.")


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
