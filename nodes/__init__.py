"""The Kandinsky node classes (ComfyUI's classic node contract) and their registration tables."""
from __future__ import annotations

from .bridge_nodes import KandinskyConditioning, KandinskyMoVQToVAE, KandinskyUNetToModel
from .decoder_nodes import KandinskyUNetSampler
from .embeds_nodes import KandinskyInterpolate
from .image_nodes import KandinskyDepthHint, KandinskyMaskInvert
from .loaders import KandinskyDecoderLoader, KandinskyPriorLoader
from .movq_nodes import KandinskyMoVQDecode, KandinskyMoVQEncode
from .paths import in_comfyui, install_example_inputs, register_comfy_folder
from .prior_nodes import KandinskyImageEmbed, KandinskyPriorEmb2Emb, KandinskyPriorEncode
from .loaders import KandinskyTextEncoderLoader
from .text_nodes import KandinskyTextEncode
from .depth_nodes import KandinskyDepthEstimate, KandinskyDepthModelLoader

NODE_CLASS_MAPPINGS = {
    "KandinskyPriorLoader": KandinskyPriorLoader,
    "KandinskyDecoderLoader": KandinskyDecoderLoader,
    "KandinskyPriorEncode": KandinskyPriorEncode,
    "KandinskyImageEmbed": KandinskyImageEmbed,
    "KandinskyInterpolate": KandinskyInterpolate,
    "KandinskyPriorEmb2Emb": KandinskyPriorEmb2Emb,
    "KandinskyDepthHint": KandinskyDepthHint,
    "KandinskyMaskInvert": KandinskyMaskInvert,
    "KandinskyMoVQEncode": KandinskyMoVQEncode,
    "KandinskyUNetSampler": KandinskyUNetSampler,
    "KandinskyMoVQDecode": KandinskyMoVQDecode,
    "KandinskyTextEncoderLoader": KandinskyTextEncoderLoader,
    "KandinskyTextEncode": KandinskyTextEncode,
    "KandinskyUNetToModel": KandinskyUNetToModel,
    "KandinskyConditioning": KandinskyConditioning,
    "KandinskyMoVQToVAE": KandinskyMoVQToVAE,
    "KandinskyDepthModelLoader": KandinskyDepthModelLoader,
    "KandinskyDepthEstimate": KandinskyDepthEstimate,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "KandinskyPriorLoader": "Kandinsky Prior Loader",
    "KandinskyDecoderLoader": "Kandinsky Decoder Loader",
    "KandinskyPriorEncode": "Kandinsky Prior (Text to Embeds)",
    "KandinskyImageEmbed": "Kandinsky Image to Embeds",
    "KandinskyInterpolate": "Kandinsky Interpolate Embeds",
    "KandinskyPriorEmb2Emb": "Kandinsky Prior Emb2Emb (Image + Text)",
    "KandinskyDepthHint": "Kandinsky Depth Hint",
    "KandinskyMaskInvert": "Kandinsky Mask Invert",
    "KandinskyMoVQEncode": "Kandinsky MoVQ Encode",
    "KandinskyUNetSampler": "Kandinsky UNet Sampler",
    "KandinskyMoVQDecode": "Kandinsky MoVQ Decode",
    "KandinskyTextEncoderLoader": "Kandinsky 3 Text Encoder Loader",
    "KandinskyTextEncode": "Kandinsky 3 Text Encode",
    "KandinskyUNetToModel": "Kandinsky UNet to MODEL",
    "KandinskyConditioning": "Kandinsky Conditioning",
    "KandinskyMoVQToVAE": "Kandinsky MoVQ to VAE",
    "KandinskyDepthModelLoader": "Kandinsky Depth Model Loader",
    "KandinskyDepthEstimate": "Kandinsky Depth Estimate",
}

if in_comfyui():  # the import-time side effects: models/kandinsky a ComfyUI model folder, example inputs
    register_comfy_folder()
    install_example_inputs()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
