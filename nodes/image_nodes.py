"""Image-side helper nodes: depth hints for the ControlNet UNet, mask conversion for inpainting."""
from __future__ import annotations

from ..kandinsky_core.stages.hints import depth_hint
from ..kandinsky_core.stages.masks import invert_mask
from . import runtime
from .common import CATEGORY, HINT


class KandinskyDepthHint:
    DESCRIPTION = (
        "Turns a depth map into the hint of the Kandinsky 2.2 depth ControlNet (kandinsky-2-2-controlnet-depth): "
        "1 or 3 channels, any size (resized to the latent's image size when sampling); values in [0, 1] are used "
        "as they are, other ranges are min-max normalised per image. Near = bright, as depth estimators output."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (HINT,)
    RETURN_NAMES = ("hint",)
    OUTPUT_TOOLTIPS = ("The depth hint for KandinskyUNetSampler's hint input.",)
    FUNCTION = "make_hint"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {
                "tooltip": "A depth map (e.g. from a depth estimator node); batch 1 or one per latent.",
            }),
        }}

    def make_hint(self, image):
        return (depth_hint(image),)


class KandinskyMaskInvert:
    DESCRIPTION = (
        "Inverts a mask (1 - mask). ComfyUI masks mark the area to repaint with 1 (white); masks drawn for the "
        "original Kandinsky inpainting code mark it with 0 (black): invert those before KandinskyMoVQEncode."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("The inverted mask (1 = repaint).",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "mask": ("MASK", {"tooltip": "A mask in the old Kandinsky convention (black/0 = repaint)."}),
        }}

    def invert(self, mask):
        return (invert_mask(mask).to(runtime.output_device()),)
