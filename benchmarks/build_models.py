"""Random-weight Kandinsky 2.2 repos for the benchmark, in the real diffusers layout (no download).

Each preset builds the diffusers / transformers modules (seeded random init), wraps them in
KandinskyV22PriorPipeline / KandinskyV22Pipeline and saves both with `save_pretrained`, so our loaders
and diffusers' `from_pretrained` read the very same safetensors files.

Presets:
* "full": the published Kandinsky 2.2 sizes (spec §1.4-1.7): UNet 1.25 B, prior 1.03 B, CLIP ViT-bigG
  text 0.69 B and vision 1.84 B, MoVQ 68 M. Timed at 512/768/1024 px, end-to-end at 768/1024 px.
* "cpu": the same architecture reduced to run in minutes on 2 CPU cores. UNet: widths 1/6
  (64, 128, 192, 256), everything else as published (4 levels, 3 resnets per level, attention on levels
  2-4 with 64-wide heads, 32 context tokens of 768, 1280-wide image embeddings). Prior: 4 layers of
  4 x 64 (inner width 256), 1280-wide embeddings. CLIP text: 2 layers of width 1280 (the prior reads its
  hidden states) with a 1280-wide MLP; CLIP vision (unused with a negative prompt): 4 layers at 1/4 width.
  MoVQ: widths 1/4 (32, 64, 64, 128). Image sides 1/4: UNet step at 128/192/256 px (the full 512/768/1024),
  end-to-end at 128/192 px (1/4 of 512/768; 256 px would take minutes per run on 2 cores).
* "tiny": a few-second smoke test (diffusers' dummy-test sizes, 4-level UNet and MoVQ, 64 px).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from kandinsky_core.configs.movq import K2_MOVQ  # noqa: E402
from kandinsky_core.configs.prior import K22_CLIP_TEXT, K22_CLIP_VISION, K22_PRIOR  # noqa: E402
from kandinsky_core.configs.unet import K22_DECODER  # noqa: E402

logger = logging.getLogger(__name__)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGE_PROCESSOR = dict(crop_size=224, do_center_crop=True, do_normalize=True, do_resize=True, image_mean=CLIP_MEAN,
                       image_std=CLIP_STD, resample=3, size=224)
# The offline test tokenizer puts <|endoftext|> at its highest id; eos_token_id 2 selects transformers'
# legacy pooling (argmax of the ids), which then pools the EOS token as the real bigG tokenizer does.
TOKENIZER_EOS = {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}


def _unet_kwargs(config) -> dict:
    return dataclasses.asdict(config)


def _movq_kwargs(config) -> dict:
    kwargs = dataclasses.asdict(config)
    kwargs.pop("has_quantizer")  # ours only
    return kwargs


@dataclass(frozen=True)
class Preset:
    name: str
    unet: dict  # diffusers UNet2DConditionModel kwargs
    movq: dict  # diffusers VQModel kwargs
    prior: dict  # diffusers PriorTransformer kwargs
    clip_text: dict  # transformers CLIPTextConfig kwargs
    clip_vision: dict  # transformers CLIPVisionConfig kwargs
    step_sizes: tuple[int, ...]  # image sides (px) for the UNet-step timing
    e2e_sizes: tuple[int, ...]  # image sides (px) for end-to-end text-to-image
    reduced: str = ""  # what differs from the published models
    flops_reference: dict = field(default_factory=dict)  # image side -> TFLOP per batch-1 UNet forward (spec §6.2)


FULL = Preset(
    name="full",
    unet=_unet_kwargs(K22_DECODER),
    movq=_movq_kwargs(K2_MOVQ),
    prior=dataclasses.asdict(K22_PRIOR),
    clip_text={**K22_CLIP_TEXT, **TOKENIZER_EOS},
    clip_vision=dict(K22_CLIP_VISION),
    step_sizes=(512, 768, 1024),
    e2e_sizes=(768, 1024),
    reduced="none (published Kandinsky 2.2 sizes)",
    flops_reference={512: 0.856, 768: 1.993, 1024: 3.714},
)

CPU = Preset(
    name="cpu",
    unet=_unet_kwargs(dataclasses.replace(K22_DECODER, block_out_channels=(64, 128, 192, 256))),
    movq=_movq_kwargs(dataclasses.replace(K2_MOVQ, block_out_channels=(32, 64, 64, 128))),
    prior=dataclasses.asdict(dataclasses.replace(K22_PRIOR, num_attention_heads=4, num_layers=4, time_embed_dim=256)),
    clip_text={**K22_CLIP_TEXT, **TOKENIZER_EOS, "intermediate_size": 1280, "num_hidden_layers": 2},
    clip_vision={**K22_CLIP_VISION, "hidden_size": 416, "intermediate_size": 2048, "num_attention_heads": 4,
                 "num_hidden_layers": 4},
    step_sizes=(128, 192, 256),
    e2e_sizes=(128, 192),
    reduced=("UNet widths 1/6 (64,128,192,256), depth/heads/context as published; prior 4 layers x 256 wide; "
             "CLIP text 2 layers (width 1280, MLP 1280), vision 4 layers at 1/4 width; MoVQ widths 1/4; UNet step at 128/192/256 px, "
             "end-to-end at 128/192 px"),
)

TINY = Preset(
    name="tiny",
    unet=_unet_kwargs(dataclasses.replace(
        K22_DECODER, block_out_channels=(32, 64, 64, 64), layers_per_block=1, attention_head_dim=32,
        cross_attention_dim=32, encoder_hid_dim=32)),
    movq=_movq_kwargs(dataclasses.replace(K2_MOVQ, block_out_channels=(32, 32, 64, 64), layers_per_block=1,
                                          norm_num_groups=8, num_vq_embeddings=12)),
    prior=dict(num_attention_heads=2, attention_head_dim=12, embedding_dim=32, num_layers=1),
    clip_text=dict(hidden_size=32, projection_dim=32, intermediate_size=37, num_attention_heads=4,
                   num_hidden_layers=2, vocab_size=1000, max_position_embeddings=77, **TOKENIZER_EOS),
    clip_vision=dict(hidden_size=32, image_size=224, projection_dim=32, intermediate_size=37,
                     num_attention_heads=4, num_channels=3, num_hidden_layers=2, patch_size=14),
    step_sizes=(64,),
    e2e_sizes=(64,),
    reduced="diffusers dummy-test widths (32/64), 1 layer per block, 64 px",
)

PRESETS = {p.name: p for p in (FULL, CPU, TINY)}


def _seeded(seed: int, build):
    torch.manual_seed(seed)
    return build()


def build_repos(preset: Preset, root: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu", seed: int = 0) -> tuple[Path, Path]:
    """Write `root/prior` and `root/decoder` (diffusers layout) with seeded random weights in `dtype`.

    Modules are initialised on `device` (a GPU initialises the full-size weights in seconds) and saved
    from there. Reuses a finished build of the same preset, dtype and seed.
    """
    import diffusers
    from tiny_models.repos import DDPM_22, UNCLIP_PRIOR
    from tiny_models.tokenizers import make_clip_tokenizer
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)

    root = Path(root)
    stamp = {"preset": preset.name, "dtype": str(dtype), "seed": seed, "unet": preset.unet, "prior": preset.prior,
             "movq": preset.movq, "clip_text": preset.clip_text, "clip_vision": preset.clip_vision}
    marker = root / "build.json"
    prior_dir, decoder_dir = root / "prior", root / "decoder"
    if marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(stamp, default=str)):
        logger.info("Reusing the %s repos in %s", preset.name, root)
        return prior_dir, decoder_dir
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.device(device):
        prior = _seeded(seed, lambda: diffusers.PriorTransformer(**preset.prior))
        prior.clip_std.data.fill_(1.0)  # zeros (the class default) would map every embedding to clip_mean
        text = _seeded(seed + 1, lambda: CLIPTextModelWithProjection(CLIPTextConfig(**preset.clip_text)))
        vision = _seeded(seed + 2, lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**preset.clip_vision)))
    tokenizer = CLIPTokenizer.from_pretrained(make_clip_tokenizer(root / "_tokenizer"))
    processor = CLIPImageProcessor(**IMAGE_PROCESSOR)
    pipe = diffusers.KandinskyV22PriorPipeline(
        prior=prior.to(dtype).eval(), image_encoder=vision.to(dtype).eval(), text_encoder=text.to(dtype).eval(),
        tokenizer=tokenizer, scheduler=diffusers.UnCLIPScheduler(**UNCLIP_PRIOR), image_processor=processor)
    pipe.save_pretrained(prior_dir)
    del pipe, prior, text, vision
    with torch.device(device):
        unet = _seeded(seed + 3, lambda: diffusers.UNet2DConditionModel(**preset.unet))
        movq = _seeded(seed + 4, lambda: diffusers.VQModel(**preset.movq))
    pipe = diffusers.KandinskyV22Pipeline(unet=unet.to(dtype).eval(), scheduler=diffusers.DDPMScheduler(**DDPM_22),
                                          movq=movq.to(dtype).eval())
    pipe.save_pretrained(decoder_dir)
    del pipe, unet, movq
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    marker.write_text(json.dumps(stamp, default=str))
    logger.info("Built the %s repos in %s in %.1f s", preset.name, root, time.perf_counter() - start)
    return prior_dir, decoder_dir


def weight_files(repo: Path) -> list[Path]:
    return sorted(p for p in repo.rglob("*.safetensors"))
