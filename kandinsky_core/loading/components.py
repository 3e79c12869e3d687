"""Load whole Kandinsky repo folders (diffusers layout) into the core's model bundles."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..components import DecoderUNet, MoVQModel, PriorModels, TextEncoderModels
from ..configs.movq import MoVQConfig
from ..configs.prior import PriorConfig
from ..configs.scheduler import SchedulerConfig
from ..configs.unet import UNetConfig, detect_unet_variant
from ..configs.unet3 import UNet3Config, detect_unet3_variant
from ..models import clip
from ..models.movq import MoVQ, rename_legacy_attention_keys
from ..models.prior import KandinskyPrior
from ..models.unet import KandinskyUNet
from ..models.unet3 import Kandinsky3UNet
from .repo import component_dir, read_component_config, read_json, read_model_index
from .strict import empty_weights, load_strict, state_dict_shapes
from .weights import read_component_weights

logger = logging.getLogger(__name__)

SCHEDULER_FOLDERS = ("scheduler", "ddpm_scheduler", "ddim_scheduler")


def _load_module(folder: Path, build, component: str, variant: str, dtype: torch.dtype,
                 state_dict: dict | None = None) -> nn.Module:
    """Build on meta, then take the checkpoint's tensors strictly (no second full-size copy)."""
    state_dict = read_component_weights(folder) if state_dict is None else state_dict
    with empty_weights():
        module = build()
    load_strict(module, state_dict, component, variant, dtype=dtype, device="cpu")
    return module.eval().requires_grad_(False)


def _scheduler_configs(repo: Path) -> dict[str, SchedulerConfig]:
    configs = {}
    for name in SCHEDULER_FOLDERS:
        path = repo / name / "scheduler_config.json"
        if path.is_file():
            configs[name] = SchedulerConfig.from_dict(read_json(path))
    if "scheduler" not in configs:
        raise ValueError(f"The repo folder {repo} has no scheduler/scheduler_config.json; re-download the repo.")
    return configs


def load_prior(repo_dir: str | Path, dtype: torch.dtype = torch.float32) -> PriorModels:
    """A prior repo (kandinsky-2-1-prior / kandinsky-2-2-prior layout) on the CPU in `dtype`."""
    repo = Path(repo_dir)
    index = read_model_index(repo)
    if index.role != "prior":
        k3 = (" Kandinsky 3 has no prior: load this folder with the text encoder loader "
              "(KandinskyTextEncoderLoader) and the decoder loader.") if index.version == "3" else ""
        raise ValueError(
            f"{repo.name} is a Kandinsky {index.version} {index.role} repo ({index.class_name}), not a prior: "
            f"choose a kandinsky-2-x-prior folder in the prior loader.{k3}"
        )
    folder = component_dir(repo, "prior")
    config = PriorConfig.from_dict(read_component_config(folder))
    prior = _load_module(folder, lambda: KandinskyPrior(config), "prior", f"Kandinsky {index.version} prior", dtype)
    text_encoder = clip.load_clip_text_encoder(component_dir(repo, "text_encoder"), dtype, "cpu")
    image_encoder = clip.load_clip_image_encoder(component_dir(repo, "image_encoder"), dtype, "cpu")
    _check_prior_widths(repo, prior, text_encoder, image_encoder)
    return PriorModels(
        name=repo.name,
        version=index.version,
        prior=prior,
        text_encoder=text_encoder,
        tokenizer=clip.load_clip_tokenizer(component_dir(repo, "tokenizer")),
        image_encoder=image_encoder,
        image_processor=clip.load_clip_image_processor(component_dir(repo, "image_processor")),
        scheduler_config=SchedulerConfig.from_dict(read_json(component_dir(repo, "scheduler") / "scheduler_config.json")),
        dtype=dtype,
    )


def _check_prior_widths(repo: Path, prior, text_encoder, image_encoder) -> None:
    width = prior.clip_mean.shape[-1]
    text_width = text_encoder.config.projection_dim
    image_width = image_encoder.config.projection_dim
    if not width == text_width == image_width:
        raise ValueError(
            f"{repo.name}: the prior works on {width}-wide CLIP embeddings but the text encoder projects to "
            f"{text_width} and the image encoder to {image_width}; the folders come from different repos."
        )


def load_decoder(repo_dir: str | Path, dtype: torch.dtype = torch.float32,
                 movq_dtype: torch.dtype | None = None) -> tuple[DecoderUNet, MoVQModel]:
    """A decoder repo (kandinsky-2-2-decoder / -decoder-inpaint / -controlnet-depth, kandinsky-2-1[-inpaint]) or a
    kandinsky-3 repo (its UNet and MoVQ; the K3 text encoder loads with `load_text_encoder`)."""
    repo = Path(repo_dir)
    index = read_model_index(repo)
    if index.role != "decoder":
        raise ValueError(
            f"{repo.name} is a Kandinsky {index.version} {index.role} repo ({index.class_name}): the decoder "
            "loader takes a Kandinsky 2.1, 2.2 or 3 decoder folder (e.g. kandinsky-2-2-decoder, kandinsky-3)."
        )
    if index.version == "3":
        return _load_decoder3(repo, dtype), load_movq(repo, movq_dtype or dtype, version="3")
    unet_dir = component_dir(repo, "unet")
    config = UNetConfig.from_dict(read_component_config(unet_dir))
    state_dict = read_component_weights(unet_dir)
    variant = detect_unet_variant(config, state_dict_shapes(state_dict))
    if variant.version != index.version:
        raise ValueError(
            f"{repo.name}: model_index.json says Kandinsky {index.version} but the UNet is a {variant.name}."
        )
    unet = _load_module(unet_dir, lambda: KandinskyUNet(config), "unet", variant.name, dtype, state_dict)
    text_encoder = tokenizer = None
    if variant.version == "2.1":
        from ..models import mclip

        text_encoder = _load_mclip(component_dir(repo, "text_encoder"), dtype)
        tokenizer = mclip.load_xlmr_tokenizer(component_dir(repo, "tokenizer"))
    decoder = DecoderUNet(
        name=repo.name,
        variant=variant,
        unet=unet,
        scheduler_configs=_scheduler_configs(repo),
        dtype=dtype,
        latent_multiple=2 ** (len(config.block_out_channels) - 1),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    return decoder, load_movq(repo, movq_dtype or dtype, version=index.version)


def _load_decoder3(repo: Path, dtype: torch.dtype) -> DecoderUNet:
    """The UNet and schedulers of a kandinsky-3 repo folder (its text encoder loads separately)."""
    unet_dir = component_dir(repo, "unet")
    config = UNet3Config.from_dict(read_component_config(unet_dir))
    variant = detect_unet3_variant(config)
    unet = _load_module(unet_dir, lambda: Kandinsky3UNet(config), "unet", variant.name, dtype)
    return DecoderUNet(
        name=repo.name,
        variant=variant,
        unet=unet,
        scheduler_configs=_scheduler_configs(repo),
        dtype=dtype,
        latent_multiple=2 ** (len(config.block_out_channels) - 1),
    )


def load_text_encoder(repo_dir: str | Path, dtype: torch.dtype = torch.float32) -> TextEncoderModels:
    """The T5 text encoder and tokenizer of a Kandinsky 3 repo folder (text_encoder/ + tokenizer/), on the CPU."""
    from ..models import t5

    repo = Path(repo_dir)
    index = read_model_index(repo)
    if index.version != "3":
        raise ValueError(
            f"{repo.name} is a Kandinsky {index.version} {index.role} repo ({index.class_name}): the text encoder "
            "loader takes a Kandinsky 3 repo folder (kandinsky-3). For Kandinsky 2.x use the prior loader."
        )
    tokenizer = t5.load_t5_tokenizer(component_dir(repo, "tokenizer"))
    text_encoder = t5.load_t5_encoder(component_dir(repo, "text_encoder"), dtype, "cpu")
    return TextEncoderModels(name=repo.name, version="3", text_encoder=text_encoder, tokenizer=tokenizer,
                             dtype=dtype)


def _load_mclip(folder: Path, dtype: torch.dtype) -> nn.Module:
    """The 2.1 M-CLIP text encoder through the strict loader."""
    from ..models import mclip

    return mclip.load_mclip(str(folder), dtype, "cpu")


def load_movq(repo_dir: str | Path, dtype: torch.dtype = torch.float32, version: str = "2.2") -> MoVQModel:
    repo = Path(repo_dir)
    folder = component_dir(repo, "movq")
    # checkpoints saved by older diffusers name the attention projections query/key/value/proj_attn
    state_dict = rename_legacy_attention_keys(read_component_weights(folder))
    has_quantizer = "quantize.embedding.weight" in state_dict  # the Kandinsky 3 MoVQ has no codebook
    config = MoVQConfig.from_dict(read_component_config(folder), has_quantizer=has_quantizer)
    movq = _load_module(folder, lambda: MoVQ(config), "movq", f"Kandinsky {version} MoVQ", dtype, state_dict)
    return MoVQModel(name=repo.name, version=version, movq=movq, dtype=dtype)
