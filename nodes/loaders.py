"""Loader nodes: a Kandinsky repo folder -> the core's model bundles, cached per folder, dtype and memory mode."""
from __future__ import annotations

from ..kandinsky_core.loading.components import load_decoder, load_prior
from ..kandinsky_core.runtime import DTYPE_CHOICES, resolve_dtype
from . import paths, previews, runtime
from .cache import ModelSlot
from .common import CATEGORY, MOVQ, PRIOR, UNET

DTYPE_TOOLTIP = (
    "Weight dtype. auto: fp16 on CUDA (MoVQ stays fp32, it is precision-sensitive), fp32 elsewhere. fp16/bf16 "
    "apply to every component, MoVQ included."
)
MEMORY_MODE_TOOLTIP = (
    "Where the models live while the workflow runs. auto: inside ComfyUI its model management decides (models "
    "stay on the GPU until other models need the room); outside ComfyUI all on the device. gpu: kept on the GPU "
    "(inside ComfyUI the same as auto). model_offload: each model is on the GPU only while its stage runs, then "
    "goes back to the CPU. lowvram: the UNet, prior and MoVQ blocks are streamed to the GPU one at a time; "
    "slowest, for small GPUs (a 1024x1024 image in well under 8 GiB). Same images in every mode."
)


def _memory_mode_input() -> dict:
    return {"memory_mode": (runtime.MEMORY_MODE_CHOICES, {"default": "auto", "tooltip": MEMORY_MODE_TOOLTIP})}


def _release(value) -> None:
    runtime.release(value if isinstance(value, tuple) else (value,))


def _with_mode(value, memory_mode: str):
    """Stamp the loader's memory mode on a freshly loaded bundle (or tuple of bundles)."""
    for bundle in value if isinstance(value, tuple) else (value,):
        bundle.memory_mode = memory_mode
    return value


class KandinskyPriorLoader:
    DESCRIPTION = (
        "Loads a Kandinsky 2.x prior repo folder (e.g. kandinsky-2-2-prior) from models/kandinsky: the prior "
        "transformer with its CLIP text and image encoders. Kept loaded while the inputs stay the same."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (PRIOR,)
    RETURN_NAMES = ("prior",)
    OUTPUT_TOOLTIPS = ("The prior: turns text or images into CLIP image embeddings for a decoder.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prior_name": (paths.list_models("prior"), {
                "tooltip": "A prior repo folder under models/kandinsky (diffusers layout, as `hf download "
                           "kandinsky-community/kandinsky-2-2-prior --local-dir models/kandinsky/kandinsky-2-2-prior` "
                           "leaves it).",
            }),
            "dtype": (DTYPE_CHOICES, {"default": "auto", "tooltip": DTYPE_TOOLTIP}),
        }, "optional": _memory_mode_input()}

    def __init__(self) -> None:
        self._slot = ModelSlot(_release)

    def load(self, prior_name: str, dtype: str, memory_mode: str = "auto"):
        folder = paths.resolve_model(prior_name, "prior")
        torch_dtype = resolve_dtype(dtype, runtime.load_device("prior"), "prior")
        runtime.check_memory_mode(memory_mode)
        # the mode is in the key: bundles of different modes never share modules (each is managed one way)
        key = ("prior", str(folder.resolve()), torch_dtype, memory_mode)
        return (self._slot.get(key, lambda: _with_mode(load_prior(folder, torch_dtype), memory_mode)),)


class KandinskyDecoderLoader:
    DESCRIPTION = (
        "Loads a Kandinsky 2.x decoder repo folder from models/kandinsky: its UNet (text-to-image, inpainting or "
        "depth ControlNet, detected from the weights) and its MoVQ image autoencoder."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (UNET, MOVQ)
    RETURN_NAMES = ("unet", "movq")
    OUTPUT_TOOLTIPS = (
        "The decoder UNet: denoises MoVQ latents conditioned on image embeddings (KandinskyUNetSampler).",
        "The MoVQ autoencoder: images <-> latents (KandinskyMoVQEncode / KandinskyMoVQDecode).",
    )
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "decoder_name": (paths.list_models("decoder"), {
                "tooltip": "A decoder repo folder under models/kandinsky: kandinsky-2-2-decoder (text-to-image, "
                           "image-to-image), kandinsky-2-2-decoder-inpaint or kandinsky-2-2-controlnet-depth.",
            }),
            "dtype": (DTYPE_CHOICES, {"default": "auto", "tooltip": DTYPE_TOOLTIP}),
        }, "optional": _memory_mode_input()}

    def __init__(self) -> None:
        self._slot = ModelSlot(_release)

    def load(self, decoder_name: str, dtype: str, memory_mode: str = "auto"):
        folder = paths.resolve_model(decoder_name, "decoder")
        unet_dtype = resolve_dtype(dtype, runtime.load_device("unet"), "unet")
        movq_dtype = resolve_dtype(dtype, runtime.load_device("movq"), "movq")
        runtime.check_memory_mode(memory_mode)
        key = ("decoder", str(folder.resolve()), unet_dtype, movq_dtype, memory_mode)
        unet, movq = self._slot.get(
            key, lambda: _with_mode(load_decoder(folder, unet_dtype, movq_dtype=movq_dtype), memory_mode))
        previews.pair(unet, movq)  # the UNet's latent previews come from this MoVQ
        return (unet, movq)
