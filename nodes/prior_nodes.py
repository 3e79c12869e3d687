"""Prior nodes: text, images, or both -> KANDINSKY_EMBEDS (CLIP image embeddings)."""
from __future__ import annotations

from ..kandinsky_core.stages import prior as prior_stage
from . import queue_checks, runtime
from .common import (CATEGORY, EMBEDS, NEGATIVE_PROMPT_TOOLTIP, PRIOR, generator, guidance_input,
                     negative_or_none, prompt_input, seed_input, steps_input)

PRIOR_STEPS_TOOLTIP = "Prior denoising steps (UnCLIP scheduler, at least 2; diffusers' default is 25)."
PRIOR_GUIDANCE_TOOLTIP = "Classifier-free guidance of the prior; 1 or less turns guidance off."
EMBEDS_TOOLTIP = "CLIP image embeddings (positive and negative) for KandinskyUNetSampler or KandinskyInterpolate."


class KandinskyPriorEncode:
    DESCRIPTION = (
        "Text to image embeddings: the prior samples a CLIP image embedding for the prompt "
        "(KandinskyV22PriorPipeline). batch_size samples several embeddings from the same prompt."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (EMBEDS,)
    RETURN_NAMES = ("embeds",)
    OUTPUT_TOOLTIPS = (EMBEDS_TOOLTIP,)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prior": (PRIOR, {"tooltip": "The prior from KandinskyPriorLoader."}),
            "prompt": prompt_input("What the image should show."),
            "negative_prompt": prompt_input(NEGATIVE_PROMPT_TOOLTIP),
            "seed": seed_input("prior's noise"),
            "steps": steps_input(25, 2, PRIOR_STEPS_TOOLTIP),
            "guidance_scale": guidance_input(4.0, PRIOR_GUIDANCE_TOOLTIP),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 64,
                                   "tooltip": "Number of embeddings sampled for the prompt (one image each)."}),
        }}

    def encode(self, prior, prompt: str, negative_prompt: str, seed: int, steps: int, guidance_scale: float,
               batch_size: int):
        embeds = prior_stage.prior_encode(
            prior, prompt, negative_or_none(negative_prompt), generator=generator(seed), steps=steps,
            guidance_scale=guidance_scale, num_images_per_prompt=batch_size,
            runtime=runtime.runtime_for(prior, "prior"),
        )
        return (embeds,)


class KandinskyImageEmbed:
    DESCRIPTION = (
        "Image to image embeddings: the CLIP image embedding of each image of the batch (no sampling), with the "
        "zero-image embedding as negative. Mix it with text embeddings in KandinskyInterpolate."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (EMBEDS,)
    RETURN_NAMES = ("embeds",)
    OUTPUT_TOOLTIPS = (EMBEDS_TOOLTIP,)
    FUNCTION = "embed"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prior": (PRIOR, {"tooltip": "The prior from KandinskyPriorLoader (its CLIP image encoder is used)."}),
            "image": ("IMAGE", {"tooltip": "Images to embed; any size (CLIP resizes and centre-crops them)."}),
        }}

    def embed(self, prior, image):
        return (prior_stage.image_embed(prior, image, runtime=runtime.runtime_for(prior, "prior")),)


class KandinskyPriorEmb2Emb:
    DESCRIPTION = (
        "Image + text to image embeddings: the image's CLIP embedding is noised to `strength` and re-denoised by "
        "the prior with the prompt (KandinskyV22PriorEmb2EmbPipeline)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (EMBEDS,)
    RETURN_NAMES = ("embeds",)
    OUTPUT_TOOLTIPS = (EMBEDS_TOOLTIP,)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prior": (PRIOR, {"tooltip": "The prior from KandinskyPriorLoader."}),
            "image": ("IMAGE", {"tooltip": "The image whose embedding is the starting point (a batch gives one embedding per image)."}),
            "prompt": prompt_input("Text that steers the image's embedding."),
            "negative_prompt": prompt_input(NEGATIVE_PROMPT_TOOLTIP),
            "strength": ("FLOAT", {
                "default": 0.3, "min": 0.01, "max": 1.0, "step": 0.01,
                "tooltip": "How far the prompt may move the image's embedding, diffusers' `strength`: with S steps "
                           "the last floor(S x strength) steps of the S-step schedule run (1.0 = ignore the image).",
            }),
            "seed": seed_input("prior's noise"),
            "steps": steps_input(25, 2, PRIOR_STEPS_TOOLTIP),
            "guidance_scale": guidance_input(4.0, PRIOR_GUIDANCE_TOOLTIP),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, steps=None, strength=None):
        """Refuse settings that can never run when the prompt is queued (see nodes/queue_checks.py)."""
        return queue_checks.emb2emb_settings(steps, strength)

    def encode(self, prior, image, prompt: str, negative_prompt: str, strength: float, seed: int, steps: int,
               guidance_scale: float):
        embeds = prior_stage.emb2emb(
            prior, image, prompt, negative_or_none(negative_prompt), strength=strength, generator=generator(seed),
            steps=steps, guidance_scale=guidance_scale, runtime=runtime.runtime_for(prior, "prior"),
        )
        return (embeds,)
