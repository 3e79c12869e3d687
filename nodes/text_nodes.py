"""KandinskyTextEncode: prompt (+ negative prompt) -> Kandinsky 3 KANDINSKY_EMBEDS through the T5 encoder."""
from __future__ import annotations

from ..kandinsky_core.stages import text3
from . import runtime
from .common import CATEGORY, EMBEDS, TEXT_ENCODER, negative_or_none, prompt_input

K3_NEGATIVE_PROMPT_TOOLTIP = (
    "What the image should not show. Empty = diffusers' negative_prompt=None: zero embeddings with an all-zero "
    "mask are the negative."
)


class KandinskyTextEncode:
    DESCRIPTION = (
        "Kandinsky 3 prompt encoding: the T5 states of the prompt and of the negative prompt "
        "(Kandinsky3Pipeline.encode_prompt), for a Kandinsky 3 UNet in KandinskyUNetSampler. For several images "
        "of one prompt, give the sampler a latent batch (the embeds are reused)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (EMBEDS,)
    RETURN_NAMES = ("embeds",)
    OUTPUT_TOOLTIPS = ("Kandinsky 3 text embeds (positive and negative, with masks) for KandinskyUNetSampler.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text_encoder": (TEXT_ENCODER, {"tooltip": "The T5 text encoder from KandinskyTextEncoderLoader."}),
            "prompt": prompt_input("What the image should show (up to 128 T5 tokens; longer prompts are cut)."),
            "negative_prompt": prompt_input(K3_NEGATIVE_PROMPT_TOOLTIP),
        }}

    def encode(self, text_encoder, prompt: str, negative_prompt: str):
        embeds = text3.encode_prompts(text_encoder, [prompt], negative_or_none(negative_prompt),
                                      runtime=runtime.runtime_for(text_encoder, "text_encoder"))
        return (embeds,)
