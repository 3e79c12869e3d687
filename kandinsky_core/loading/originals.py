"""Folders of the original ai-forever Kandinsky 3 / 3.1 release (no model_index.json), loaded as they are.

`hf download ai-forever/Kandinsky3.1 --local-dir models/kandinsky/Kandinsky3.1` leaves `weights/` with
`kandinsky3.pt`, `kandinsky3_inpainting.pt`, `kandinsky3_flash.pt` (pickled dicts: `unet` state dict,
`null_embedding`, ...), the text projection of each (`projection.pt`, `projection_inpainting.pt`,
`projection_flash.pt`), `movq.pt` and `flan_ul2_encoder/` (a transformers T5 encoder + tokenizer). The 3.0
release keeps the projection inside the UNet pickle (`projections`, keyed `t5.0.weight`, ...).

Each UNet file is its own loader choice ("Kandinsky3.1 / flash"). Pickles are read only with
`torch.load(weights_only=True)` and memory-mapped, then cast tensor by tensor into modules built on the
meta device, so a 12 GB fp32 file never exists twice in memory.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..components import DecoderUNet, MoVQModel, TextEncoderModels
from ..configs.scheduler import SchedulerConfig
from ..configs.unet3 import detect_unet3_variant
from .original_keys import (
    movq_config_from_original,
    original_movq_to_diffusers,
    original_unet_to_diffusers,
    unet3_config_from_original,
)
from .repo import MissingFileError
from .strict import empty_weights, load_strict
from .weights import load_pickle_safely

logger = logging.getLogger(__name__)

WEIGHTS_DIR = "weights"
TEXT_ENCODER_DIR = "flan_ul2_encoder"
MOVQ_FILE = "movq.pt"
SEPARATOR = " / "  # "Kandinsky3.1 / flash"
# kind -> (UNet file, projection file); the sampler each kind was released with is documented in KANDINSKY_3.md
# kandinsky-3/scheduler (spec §3.1): what ddpm/ddim use with an original UNet (k3_original brings its own math)
K3_SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon", "clip_sample": True,
                "thresholding": False, "steps_offset": 1, "timestep_spacing": "leading", "variance_type": "fixed_small"}
UNET_FILES = {
    "base": ("kandinsky3.pt", "projection.pt"),
    "inpainting": ("kandinsky3_inpainting.pt", "projection_inpainting.pt"),
    "flash": ("kandinsky3_flash.pt", "projection_flash.pt"),
}


@dataclass(frozen=True)
class OriginalUNetFile:
    """One UNet of an original release folder and the projection that belongs to it."""

    release: str  # folder name, e.g. "Kandinsky3.1"
    kind: str  # "base", "inpainting" or "flash"
    unet_file: Path
    projection_file: Path | None  # None: the projection is inside the UNet pickle (3.0)

    @property
    def choice(self) -> str:
        return f"{self.release}{SEPARATOR}{self.kind}"


def weights_dir(folder: str | Path) -> Path | None:
    """The `weights/` folder of an original release (or the folder itself when it holds the files)."""
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return None
    for candidate in (folder / WEIGHTS_DIR, folder):
        if any((candidate / unet).is_file() for unet, _ in UNET_FILES.values()) or (candidate / MOVQ_FILE).is_file():
            return candidate
    return None


def is_original_release(folder: str | Path) -> bool:
    try:
        return weights_dir(folder) is not None
    except OSError as e:  # an unreadable folder is no release (the loaders list the rest)
        logger.warning("Skipping %s: %s", folder, e)
        return False


def list_original_unets(folder: str | Path) -> list[OriginalUNetFile]:
    """Every UNet file in an original release folder, base first."""
    weights = weights_dir(folder)
    if weights is None:
        return []
    found = []
    for kind, (unet, projection) in UNET_FILES.items():
        if (weights / unet).is_file():
            proj = weights / projection
            found.append(OriginalUNetFile(Path(folder).name, kind, weights / unet, proj if proj.is_file() else None))
    return found


def find_original_unet(folder: str | Path, kind: str) -> OriginalUNetFile:
    for entry in list_original_unets(folder):
        if entry.kind == kind:
            return entry
    unet = UNET_FILES.get(kind, ("?",))[0]
    raise MissingFileError(
        f"{Path(folder).name} has no {kind} UNet ({WEIGHTS_DIR}/{unet}); download it "
        f"(`hf download ai-forever/Kandinsky3.1 {WEIGHTS_DIR}/{unet} --local-dir {folder}`)."
    )


def text_encoder_dir(folder: str | Path) -> Path | None:
    """The transformers T5 encoder folder of an original 3.1 release (weights/flan_ul2_encoder)."""
    weights = weights_dir(folder)
    if weights is not None and (weights / TEXT_ENCODER_DIR / "config.json").is_file():
        return weights / TEXT_ENCODER_DIR
    return None


def _tensor_dict(payload: object, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(payload, dict) or not payload or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()
    ):
        raise ValueError(f"{path} does not hold a {what} state dict (a dict of tensor name -> tensor): wrong file.")
    return payload


def read_original_unet(entry: OriginalUNetFile) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """(diffusers-named UNet state dict incl. the projection, null_embedding) of one original UNet file."""
    payload = load_pickle_safely(entry.unet_file, mmap=True)
    if not isinstance(payload, dict) or "unet" not in payload:
        keys = sorted(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{entry.unet_file} is not an original Kandinsky 3 UNet file (expected a dict with 'unet' and "
            f"'null_embedding'; found {keys}). Is it the MoVQ or a projection? Choose a kandinsky3*.pt UNet file."
        )
    unet = _tensor_dict(payload["unet"], entry.unet_file, "UNet")
    if entry.projection_file is not None:
        projection = _tensor_dict(load_pickle_safely(entry.projection_file, mmap=True), entry.projection_file,
                                  "text projection")
    elif isinstance(payload.get("projections"), dict):
        projection = _tensor_dict(payload["projections"], entry.unet_file, "text projection")
    else:
        proj = UNET_FILES[entry.kind][1]
        raise MissingFileError(
            f"{entry.unet_file.parent / proj} is missing (the text projection of the {entry.kind} UNet) and "
            f"{entry.unet_file.name} holds none: download {WEIGHTS_DIR}/{proj} from the same release."
        )
    null = payload.get("null_embedding")
    if null is not None and not isinstance(null, torch.Tensor):
        raise ValueError(f"{entry.unet_file}: 'null_embedding' is a {type(null).__name__}, expected a tensor.")
    return original_unet_to_diffusers(unet, projection), null


def load_original_unet(folder: str | Path, kind: str, dtype: torch.dtype = torch.float32) -> DecoderUNet:
    """One UNet of an original release folder as a Kandinsky 3 decoder bundle (weights cast to `dtype`)."""
    from ..models.unet3 import Kandinsky3UNet

    entry = find_original_unet(folder, kind)
    state_dict, null_embedding = read_original_unet(entry)
    config = unet3_config_from_original(state_dict)
    variant = detect_unet3_variant(config)
    if null_embedding is not None and tuple(null_embedding.shape) != (config.cross_attention_dim,):
        raise ValueError(
            f"{entry.unet_file}: null_embedding has shape {tuple(null_embedding.shape)}, expected "
            f"({config.cross_attention_dim},) for this UNet; the file is corrupt."
        )
    with empty_weights():
        unet = Kandinsky3UNet(config)
    load_strict(unet, state_dict, "unet", f"{entry.choice} ({variant.name})", dtype=dtype, device="cpu")
    return DecoderUNet(
        name=entry.choice,
        variant=variant,
        unet=unet.eval().requires_grad_(False),
        scheduler_configs={"scheduler": SchedulerConfig.from_dict(K3_SCHEDULER)},
        dtype=dtype,
        latent_multiple=2 ** (len(config.block_out_channels) - 1),
        null_embedding=None if null_embedding is None else null_embedding.to(torch.float32).clone(),
        original_kind=kind,
    )


def load_original_movq(folder: str | Path, dtype: torch.dtype = torch.float32) -> MoVQModel:
    """The MoVQ of an original release folder (weights/movq.pt, taming layout without a quantizer)."""
    from ..models.movq import MoVQ

    weights = weights_dir(folder)
    path = None if weights is None else weights / MOVQ_FILE
    if path is None or not path.is_file():
        raise MissingFileError(f"{Path(folder).name} has no {WEIGHTS_DIR}/{MOVQ_FILE}: download it from the release.")
    payload = load_pickle_safely(path, mmap=True)
    if isinstance(payload, dict) and "unet" in payload:
        raise ValueError(f"{path} holds a UNet, not the MoVQ: the files are mixed up; re-download {MOVQ_FILE}.")
    state_dict = original_movq_to_diffusers(_tensor_dict(payload, path, "MoVQ"))
    config = movq_config_from_original(state_dict)
    with empty_weights():
        movq = MoVQ(config)
    load_strict(movq, state_dict, "movq", f"{Path(folder).name} original MoVQ", dtype=dtype, device="cpu")
    return MoVQModel(name=Path(folder).name, version="3", movq=movq.eval().requires_grad_(False), dtype=dtype)


def load_original_text_encoder(folder: str | Path, dtype: torch.dtype = torch.float32) -> TextEncoderModels:
    """The T5 encoder + tokenizer of an original 3.1 release (weights/flan_ul2_encoder, transformers format)."""
    from ..models import t5

    encoder_dir = text_encoder_dir(folder)
    if encoder_dir is None:
        raise MissingFileError(
            f"{Path(folder).name} has no {WEIGHTS_DIR}/{TEXT_ENCODER_DIR}/ (the 3.1 release's T5 encoder): download "
            f"it (`hf download ai-forever/Kandinsky3.1 --include '{WEIGHTS_DIR}/{TEXT_ENCODER_DIR}/*' --local-dir "
            f"{folder}`) or use the text encoder of a diffusers kandinsky-3 folder."
        )
    tokenizer = t5.load_t5_tokenizer(encoder_dir)
    text_encoder = t5.load_t5_encoder(encoder_dir, dtype, "cpu")
    return TextEncoderModels(name=f"{Path(folder).name}{SEPARATOR}{TEXT_ENCODER_DIR}", version="3",
                             text_encoder=text_encoder, tokenizer=tokenizer, dtype=dtype)
