"""Shared pieces of the node classes: category, socket type names, input specs, small conversions."""
from __future__ import annotations

import torch

from ..kandinsky_core.stages.validation import MAX_STEPS

CATEGORY = "Kandinsky"

# Custom socket types (payload classes in kandinsky_core.components / kandinsky_core.payloads).
PRIOR = "KANDINSKY_PRIOR"
UNET = "KANDINSKY_UNET"
MOVQ = "KANDINSKY_MOVQ"
EMBEDS = "KANDINSKY_EMBEDS"
HINT = "KANDINSKY_HINT"
TEXT_ENCODER = "KANDINSKY_TEXT_ENCODER"
DEPTH_MODEL = "KANDINSKY_DEPTH_MODEL"

MAX_SEED = 0xFFFFFFFFFFFFFFFF  # torch.Generator.manual_seed takes 0 .. 2**64 - 1 (negatives would alias large seeds)


def seed_input(what: str) -> tuple:
    return ("INT", {
        "default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
        "tooltip": f"Seed of the {what}, drawn on the CPU in float32 (as ComfyUI does): the same seed gives the "
                   "same result on any device.",
    })


def steps_input(default: int, minimum: int, tooltip: str) -> tuple:
    return ("INT", {"default": default, "min": minimum, "max": MAX_STEPS, "tooltip": tooltip})


def guidance_input(default: float, tooltip: str) -> tuple:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01, "tooltip": tooltip})


def prompt_input(tooltip: str) -> tuple:
    return ("STRING", {"default": "", "multiline": True, "dynamicPrompts": True, "tooltip": tooltip})


NEGATIVE_PROMPT_TOOLTIP = (
    "What the image should not show. Empty = diffusers' negative_prompt=None: the CLIP embedding of an empty "
    "(zero) image is the negative."
)


def generator(seed: int) -> torch.Generator:
    """The CPU generator all of a node's noise is drawn from."""
    return torch.Generator("cpu").manual_seed(check_int_range(seed, "seed", 0, MAX_SEED))


def negative_or_none(negative_prompt: str) -> str | None:
    """An empty negative prompt means diffusers' negative_prompt=None (zero-image embedding as negative)."""
    return None if negative_prompt == "" else negative_prompt


def check_int_range(value: int, name: str, minimum: int, maximum: int) -> int:
    """Runtime twin of an INT input's min/max (API workflows skip the editor's clamping)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer from {minimum} to {maximum}, got {value!r}.")
    return value
