"""MoVQ nodes: ComfyUI IMAGE <-> LATENT through the decoder repo's MoVQ autoencoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..kandinsky_core.stages import movq as movq_stage
from ..kandinsky_core.stages.masks import as_mask_batch, blank_repaint_area
from ..kandinsky_core.stages.validation import check_pixels
from . import runtime
from .common import CATEGORY, MOVQ
from .latents import latent_samples


def tile_size_input() -> tuple:
    return ("INT", {
        "default": 0, "min": 0, "max": 8192, "step": 64,
        "tooltip": "0: the whole image at once, in tiles only if the device runs out of memory (as ComfyUI's VAE "
                   "nodes). Otherwise the side in pixels of overlapping tiles to run MoVQ in (less memory, "
                   "results close to the whole image's); at least 4x the MoVQ factor (32 px).",
    })


def _noise_mask(mask: torch.Tensor, image_size: tuple[int, int], encoded_size: tuple[int, int]) -> torch.Tensor:
    """MASK of any size -> (B, 1, H, W) at the encoded image's size (resized, then cropped like the image)."""
    m = as_mask_batch(mask.to("cpu"))
    if tuple(m.shape[-2:]) != image_size:
        m = F.interpolate(m, size=image_size, mode="bilinear", align_corners=False)  # as ComfyUI's inpaint encode
    top, left = (image_size[0] - encoded_size[0]) // 2, (image_size[1] - encoded_size[1]) // 2
    return m[..., top : top + encoded_size[0], left : left + encoded_size[1]].clamp(0, 1)


class KandinskyMoVQEncode:
    DESCRIPTION = (
        "Encodes images to MoVQ latents (4 channels, 1/8 size for the real models) for image-to-image or "
        "inpainting. With a mask the LATENT carries it as `noise_mask` (1 = repaint): wire it into a "
        "KandinskyUNetSampler with an inpainting UNet."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("MoVQ latents of the images (plus `noise_mask` when a mask was given).",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "movq": (MOVQ, {"tooltip": "The MoVQ from KandinskyDecoderLoader (2.x or kandinsky-3)."}),
                "image": ("IMAGE", {"tooltip": "Images to encode; sides that are not multiples of 8 are "
                                               "centre-cropped to the multiple below."}),
            },
            "optional": {
                "mask": ("MASK", {
                    "tooltip": "Inpainting mask, 1 (white) = repaint, 0 = keep (ComfyUI's convention; use "
                               "KandinskyMaskInvert for black = repaint masks). Resized to the image.",
                }),
                "tile_size": tile_size_input(),
            },
        }

    def encode(self, movq, image, mask=None, tile_size: int = 0):
        if mask is not None:
            check_pixels(mask, "mask")  # before the (slow) image encode
        latents = movq_stage.encode(movq, image, runtime=runtime.runtime_for(movq, "movq"), tile_size=tile_size)
        out = {"samples": latents.to(runtime.output_device())}
        if mask is not None:
            f = movq.scale_factor
            encoded = (latents.shape[-2] * f, latents.shape[-1] * f)
            noise_mask = _noise_mask(mask, (image.shape[1], image.shape[2]), encoded)
            out["noise_mask"] = noise_mask.to(runtime.output_device())
            if movq.version == "3":  # the 3.1 inpainting UNet also reads the image with the repaint area blanked
                masked = movq_stage.encode(movq, blank_repaint_area(image, mask), runtime=runtime.runtime_for(movq, "movq"),
                                          tile_size=tile_size)
                out["masked_samples"] = masked.to(runtime.output_device())
        return (out,)


class KandinskyMoVQDecode:
    DESCRIPTION = "Decodes MoVQ latents to images (IMAGE, values 0..1)."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The decoded images.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "movq": (MOVQ, {"tooltip": "The MoVQ from the same KandinskyDecoderLoader as the UNet."}),
            "latent": ("LATENT", {"tooltip": "Latents from KandinskyUNetSampler (or KandinskyMoVQEncode)."}),
        }, "optional": {
            "tile_size": tile_size_input(),
        }}

    def decode(self, movq, latent, tile_size: int = 0):
        image = movq_stage.decode(movq, latent_samples(latent), runtime=runtime.runtime_for(movq, "movq"),
                                  tile_size=tile_size)
        return (image.to(runtime.output_device()),)
