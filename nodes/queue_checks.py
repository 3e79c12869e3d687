"""Queue-time checks (ComfyUI's VALIDATE_INPUTS): settings that can never run are refused when the prompt is
queued, before any model loads and before the nodes upstream run. The message comes back in POST /prompt's
answer and shows on the node in the editor.

A VALIDATE_INPUTS that takes an input replaces ComfyUI's own min/max check of it, so these checks include the
widget ranges. An input linked from another node has no value at queue time (None): the stage checks it when
the node runs.
"""
from __future__ import annotations

from typing import Callable

from ..kandinsky_core.stages.validation import check_runs_a_step, check_steps, check_strength

# Every Kandinsky decoder schedule has 1000 training timesteps, "leading" spacing and steps_offset 1, so
# 1000 steps would reach timestep 1000: one past the schedule.
DECODER_MAX_STEPS = 999


def answer(check: Callable[[], None]) -> bool | str:
    """VALIDATE_INPUTS' answer: True, or what was wrong (the check's ValueError message)."""
    try:
        check()
    except ValueError as error:
        return str(error)
    return True


def _decoder_settings(steps: int | None, denoise: float | None) -> None:
    if steps is not None:
        check_steps(steps)
        if steps > DECODER_MAX_STEPS:
            raise ValueError(f"steps={steps} runs past the decoder's 1000-step training schedule (its timesteps "
                             f"start at 1): use at most {DECODER_MAX_STEPS} steps.")
    if denoise is not None:
        check_strength(denoise, "denoise")
    if steps is not None and denoise is not None:
        check_runs_a_step(steps, denoise, "denoise")


def _emb2emb_settings(steps: int | None, strength: float | None) -> None:
    if steps is not None:
        check_steps(steps, minimum=2, what="prior steps (the UnCLIP scheduler needs at least 2)")
    if strength is not None:
        check_strength(strength, "strength")
    if steps is not None and strength is not None:
        check_runs_a_step(steps, strength, "strength")


def decoder_settings(steps: int | None, denoise: float | None) -> bool | str:
    """KandinskyUNetSampler: steps within the schedule, denoise in (0, 1], floor(steps x denoise) >= 1."""
    return answer(lambda: _decoder_settings(steps, denoise))


def emb2emb_settings(steps: int | None, strength: float | None) -> bool | str:
    """KandinskyPriorEmb2Emb: at least 2 steps, strength in (0, 1], floor(steps x strength) >= 1."""
    return answer(lambda: _emb2emb_settings(steps, strength))
