"""KandinskyInterpolate: a weighted mix of embeddings (texts and images), as the prior's `interpolate`."""
from __future__ import annotations

import math

from ..kandinsky_core.stages import prior as prior_stage
from .common import CATEGORY, EMBEDS

MAX_INPUTS = 8  # embeds_1..embeds_8; the web extension shows one more pair as the last one is connected
REQUIRED_INPUTS = 2


def _weight(i: int) -> tuple:
    return ("FLOAT", {
        "default": 0.5 if i <= REQUIRED_INPUTS else 0.0, "min": -10.0, "max": 10.0, "step": 0.05,
        "tooltip": f"Weight of embeds_{i}. Positives are summed with the weights as given (diffusers never "
                   "normalises them, so weights usually sum to 1); negatives are mixed with normalised weights."
                   + ("" if i <= REQUIRED_INPUTS else " Used only when embeds_%d is connected." % i),
    })


def _embeds(i: int) -> tuple:
    return (EMBEDS, {"tooltip": f"Embeddings to mix (KandinskyPriorEncode, KandinskyImageEmbed, ...), input {i}."})


class KandinskyInterpolate:
    DESCRIPTION = (
        "Mixes 2 to 8 embeddings (from text prompts and/or images) with weights, as KandinskyV22PriorPipeline."
        "interpolate does. Inputs with batch 1 broadcast to the largest batch."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (EMBEDS,)
    RETURN_NAMES = ("embeds",)
    OUTPUT_TOOLTIPS = ("The weighted mix, for KandinskyUNetSampler.",)
    FUNCTION = "interpolate"

    @classmethod
    def INPUT_TYPES(cls):
        required, optional = {}, {}
        for i in range(1, MAX_INPUTS + 1):
            section = required if i <= REQUIRED_INPUTS else optional
            section[f"embeds_{i}"] = _embeds(i)
            section[f"weight_{i}"] = _weight(i)
        return {"required": required, "optional": optional}

    def interpolate(self, **inputs):
        spec = self.INPUT_TYPES()
        unknown = sorted(k for k in inputs if k not in spec["required"] and k not in spec["optional"])
        if unknown:
            raise ValueError(f"KandinskyInterpolate got unknown inputs {unknown}; it takes "
                             f"embeds_1..embeds_{MAX_INPUTS} and weight_1..weight_{MAX_INPUTS}.")
        embeds, weights = [], []
        for i in range(1, MAX_INPUTS + 1):
            item = inputs.get(f"embeds_{i}")
            if item is None:
                continue
            weight = inputs.get(f"weight_{i}")
            if weight is None:
                raise ValueError(f"embeds_{i} is connected but weight_{i} is missing: give it a weight.")
            weight = float(weight)
            if not math.isfinite(weight):
                raise ValueError(f"weight_{i} must be a finite number, got {weight!r}.")
            embeds.append(item)
            weights.append(weight)
        if all(w == 0 for w in weights):
            raise ValueError(
                f"All interpolation weights are zero ({weights}): give at least one connected embeds a non-zero weight."
            )
        return (prior_stage.interpolate(embeds, weights),)
