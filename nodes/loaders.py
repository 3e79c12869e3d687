"""Loader nodes: a Kandinsky repo folder -> the core's model bundles, cached per folder, dtype and memory mode."""
from __future__ import annotations

from ..kandinsky_core import fp8
from ..kandinsky_core.loading import originals
from ..kandinsky_core.loading.components import load_decoder, load_prior, load_text_encoder
from ..kandinsky_core.loading.repo import read_model_index
from ..kandinsky_core.runtime import DTYPE_CHOICES, resolve_dtype
from . import paths, runtime
from .cache import ModelSlot
from .common import CATEGORY, MOVQ, PRIOR, TEXT_ENCODER, UNET

DTYPE_TOOLTIP = (
    "Weight dtype. auto: fp16 on CUDA (MoVQ stays fp32, it is precision-sensitive), fp32 elsewhere. fp16/bf16 "
    "apply to every component, MoVQ included."
)
FP8_DTYPE_CHOICES = [*DTYPE_CHOICES, fp8.CHOICE]
DECODER_DTYPE_TOOLTIP = DTYPE_TOOLTIP + (
    " fp8_e4m3fn (Kandinsky 3 only): the UNet's weights are stored in 8-bit float (half of fp16) and computed "
    "per layer in bf16 on CUDA (fp32 elsewhere); the MoVQ loads as with auto. Images differ slightly from fp16."
)
TEXT_ENCODER_DTYPE_TOOLTIP = (
    "Weight dtype of the T5 encoder (8.7 B parameters: 35 GB in fp32, 17 GB in fp16/bf16, 8.7 GB in fp8). auto: "
    "bf16 on CUDA (the encoder overflows plain fp16), fp32 elsewhere. fp16 keeps its feed-forward outputs in "
    "fp32. fp8_e4m3fn: weights stored in 8-bit float, computed per layer in bf16 on CUDA (fp32 elsewhere); "
    "prompt embeddings differ slightly from bf16."
)
MEMORY_MODE_TOOLTIP = (
    "Where the models live while the workflow runs. auto: inside ComfyUI its model management decides (models "
    "stay on the GPU until other models need the room); outside ComfyUI all on the device. gpu: kept on the GPU "
    "(inside ComfyUI the same as auto). model_offload: each model is on the GPU only while its stage runs, then "
    "goes back to the CPU. lowvram: the UNet, prior, T5 text encoder and MoVQ blocks are streamed to the GPU one at a time; "
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
        "Loads a Kandinsky decoder repo folder from models/kandinsky: its UNet (2.x: text-to-image, inpainting or "
        "depth ControlNet, detected from the weights; 3: the Kandinsky 3 UNet) and its MoVQ image autoencoder. "
        "For Kandinsky 3 load the same kandinsky-3 folder in KandinskyTextEncoderLoader for the prompts."
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
            "decoder_name": (paths.list_models("decoder") + paths.list_original_unets(), {
                "tooltip": "A decoder repo folder under models/kandinsky: kandinsky-2-2-decoder (text-to-image, "
                           "image-to-image), kandinsky-2-2-decoder-inpaint, kandinsky-2-2-controlnet-depth, "
                           "kandinsky-2-1, or kandinsky-3 (Kandinsky 3 UNet + MoVQ).",
            }),
            "dtype": (FP8_DTYPE_CHOICES, {"default": "auto", "tooltip": DECODER_DTYPE_TOOLTIP}),
        }, "optional": _memory_mode_input()}

    def __init__(self) -> None:
        self._slot = ModelSlot(_release)

    def load(self, decoder_name: str, dtype: str, memory_mode: str = "auto"):
        original = paths.resolve_original_unet(decoder_name)  # (folder, kind) of an original release UNet
        folder = original[0] if original else paths.resolve_model(decoder_name, "decoder")
        unet_dtype, unet_fp8 = fp8.resolve_weights(dtype, runtime.load_device("unet"), "unet")
        movq_dtype = resolve_dtype("auto" if unet_fp8 else dtype, runtime.load_device("movq"), "movq")
        runtime.check_memory_mode(memory_mode)
        source = str(folder.resolve()) + (f" / {original[1]}" if original else "")  # one UNet of a release
        key = ("decoder", source, unet_dtype, unet_fp8, movq_dtype, memory_mode)
        version = "3" if original else read_model_index(folder).version
        if unet_fp8 and version != "3":  # refused before loading anything
            raise ValueError(f"dtype fp8_e4m3fn is for Kandinsky 3 only, but '{decoder_name}' is a Kandinsky {version} "
                             "decoder: choose auto, fp16, bf16 or fp32 (its 1.2 B parameters fit in fp16).")

        def load():
            if original:  # weights/kandinsky3*.pt of an original ai-forever Kandinsky 3 release
                unet, movq = (originals.load_original_unet(folder, original[1], unet_dtype),
                              originals.load_original_movq(folder, movq_dtype))
            else:
                unet, movq = load_decoder(folder, unet_dtype, movq_dtype=movq_dtype)
            if unet_fp8:
                fp8.store_unet_fp8(unet)
            return _with_mode((unet, movq), memory_mode)

        unet, movq = self._slot.get(key, load)
        return (unet, movq)


class KandinskyTextEncoderLoader:
    DESCRIPTION = (
        "Loads the Kandinsky 3 text encoder (Flan-UL2's T5 encoder) and its tokenizer from a kandinsky-3 repo "
        "folder in models/kandinsky. Kandinsky 3 has no prior: this stands where the prior stands in a 2.x graph."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (TEXT_ENCODER,)
    RETURN_NAMES = ("text_encoder",)
    OUTPUT_TOOLTIPS = ("The T5 text encoder: turns prompts into Kandinsky 3 embeds (KandinskyTextEncode).",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text_encoder_name": (paths.list_models("text_encoder") + paths.list_original_text_encoders(), {
                "tooltip": "A Kandinsky 3 repo folder under models/kandinsky (as `hf download "
                           "kandinsky-community/kandinsky-3 --local-dir models/kandinsky/kandinsky-3` leaves it); "
                           "its text_encoder/ and tokenizer/ are loaded.",
            }),
            "dtype": (FP8_DTYPE_CHOICES, {"default": "auto", "tooltip": TEXT_ENCODER_DTYPE_TOOLTIP}),
        }, "optional": _memory_mode_input()}

    def __init__(self) -> None:
        self._slot = ModelSlot(_release)

    def load(self, text_encoder_name: str, dtype: str, memory_mode: str = "auto"):
        original = paths.resolve_original(text_encoder_name, (originals.TEXT_ENCODER_DIR,))  # weights/flan_ul2_encoder
        folder = original[0] if original else paths.resolve_model(text_encoder_name, "text_encoder")
        torch_dtype, use_fp8 = fp8.resolve_weights(dtype, runtime.load_device("text_encoder"), "text_encoder")
        runtime.check_memory_mode(memory_mode)
        key = ("text_encoder", str(folder.resolve()), torch_dtype, use_fp8, memory_mode)

        def load():
            read = originals.load_original_text_encoder if original else load_text_encoder
            bundle = read(folder, torch_dtype)
            if use_fp8:
                fp8.store_fp8(bundle.text_encoder)
            return _with_mode(bundle, memory_mode)

        return (self._slot.get(key, load),)
