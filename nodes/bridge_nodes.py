"""Bridge nodes: Kandinsky into ComfyUI's own sampling stack (KSampler, SamplerCustomAdvanced, VAEDecode, ...).

The node classes import without ComfyUI; the MODEL and VAE objects are built by nodes/comfy_bridge.py,
imported when the node runs (inside ComfyUI only).
"""
from __future__ import annotations

from . import bridge
from .common import CATEGORY, EMBEDS, HINT, MOVQ, UNET
from .paths import in_comfyui


def _comfy_bridge():
    if not in_comfyui():
        raise RuntimeError(
            "This node makes ComfyUI objects (MODEL / VAE) and runs only inside ComfyUI; outside it use "
            "KandinskyUNetSampler and KandinskyMoVQDecode."
        )
    from . import comfy_bridge

    return comfy_bridge


class KandinskyUNetToModel:
    DESCRIPTION = (
        "Turns a Kandinsky decoder UNet into a ComfyUI MODEL for KSampler, KSamplerAdvanced and "
        "SamplerCustomAdvanced with any of ComfyUI's samplers and schedulers. Its sigmas are the repo's own "
        "training schedule; the model predicts eps (the learned-variance half is dropped). Condition it with "
        "KandinskyConditioning; inpainting UNets take the LATENT's noise_mask. Kandinsky 3: KSampler's cfg is "
        "K3's guidance_scale + 1 (K3's default 3.0 is cfg 4.0)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The UNet as a ComfyUI MODEL (eps prediction, the repo's sigmas, MoVQ latent previews).",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "unet": (UNET, {"tooltip": "The UNet from KandinskyDecoderLoader (2.x text-to-image, inpainting or depth; "
                                       "Kandinsky 3)."}),
        }}

    def convert(self, unet):
        return (_comfy_bridge().model_patcher(unet),)


class KandinskyConditioning:
    DESCRIPTION = (
        "Turns Kandinsky embeddings into ComfyUI CONDITIONING for a KandinskyUNetToModel MODEL: positive = the "
        "prior's image embeddings, negative = the prior's own negative embeddings (not zeros). Kandinsky 2.1 "
        "also carries the prompts for the UNet's text encoder; a depth hint rides along in both. Kandinsky 3 "
        "(KandinskyTextEncode's embeds): the T5 states and their mask, negative = the encoder's negative prompt "
        "states; KSampler's cfg = K3 guidance_scale + 1."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    OUTPUT_TOOLTIPS = (
        "The positive conditioning (KSampler's positive input).",
        "The negative conditioning from the prior's negative embeddings (KSampler's negative input).",
    )
    FUNCTION = "condition"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "embeds": (EMBEDS, {"tooltip": "Embeddings from a prior node of the same Kandinsky version as the "
                                               "UNet (KandinskyPriorEncode, KandinskyImageEmbed, ...), or Kandinsky "
                                               "3 text embeds (KandinskyTextEncode)."}),
            },
            "optional": {
                "hint": (HINT, {"tooltip": "Depth hint (KandinskyDepthHint); required by, and only for, the depth "
                                           "ControlNet UNet."}),
            },
        }

    def condition(self, embeds, hint=None):
        return bridge.conditioning_pair(embeds, hint)


class KandinskyMoVQToVAE:
    DESCRIPTION = (
        "Turns a Kandinsky MoVQ into a ComfyUI VAE, so stock VAEDecode, VAEDecodeTiled, VAEEncode and "
        "VAEEncodeForInpaint work on MoVQ latents (same images as KandinskyMoVQDecode / KandinskyMoVQEncode)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VAE",)
    RETURN_NAMES = ("vae",)
    OUTPUT_TOOLTIPS = ("The MoVQ as a ComfyUI VAE.",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "movq": (MOVQ, {"tooltip": "The MoVQ from KandinskyDecoderLoader."}),
        }}

    def convert(self, movq):
        return (_comfy_bridge().MoVQVAE(movq),)
