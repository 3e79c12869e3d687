"""Depth estimation inside the pack: a transformers depth model folder -> depth maps for KandinskyDepthHint."""
from __future__ import annotations

from ..kandinsky_core.loading.depth import load_depth_model
from ..kandinsky_core.stages.depth import estimate_depth
from . import paths, runtime
from .cache import ModelSlot
from .common import CATEGORY, DEPTH_MODEL


def _release(value) -> None:
    runtime.release((value,))


class KandinskyDepthModelLoader:
    DESCRIPTION = (
        "Loads a depth-estimation model folder from models/kandinsky (transformers layout: DPT such as "
        "Intel/dpt-hybrid-midas or Intel/dpt-large, Depth Anything V2 -hf folders, ...), in float32. Kept loaded "
        "while the input stays the same."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (DEPTH_MODEL,)
    RETURN_NAMES = ("depth_model",)
    OUTPUT_TOOLTIPS = ("The depth estimator for KandinskyDepthEstimate.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "depth_model_name": (paths.list_depth_models(), {
                "tooltip": "A depth-estimation model folder under models/kandinsky, as `hf download "
                           "Intel/dpt-hybrid-midas --local-dir models/kandinsky/dpt-hybrid-midas` leaves it.",
            }),
        }}

    def __init__(self) -> None:
        self._slot = ModelSlot(_release)

    def load(self, depth_model_name: str):
        folder = paths.resolve_depth_model(depth_model_name)
        return (self._slot.get(("depth", str(folder.resolve())), lambda: load_depth_model(folder)),)


class KandinskyDepthEstimate:
    DESCRIPTION = (
        "Estimates a depth map (near = bright) of each image, exactly as transformers' depth-estimation pipeline "
        "does (its `depth` image, at the image's own size). Feed it to KandinskyDepthHint for the Kandinsky 2.2 "
        "depth ControlNet, or preview it like any image."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("depth",)
    OUTPUT_TOOLTIPS = ("The depth maps (B, H, W, 3), gray, 0..1, one per input image.",)
    FUNCTION = "estimate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "depth_model": (DEPTH_MODEL, {"tooltip": "The depth estimator from KandinskyDepthModelLoader."}),
            "image": ("IMAGE", {"tooltip": "Images to estimate the depth of (a batch gives a batch of depth maps)."}),
        }}

    def estimate(self, depth_model, image):
        depth = estimate_depth(depth_model, image, runtime=runtime.runtime_for(depth_model, "depth"))
        return (depth.to(runtime.output_device()),)
