"""Tiny reference prior components (spec section 5.1, diffusers' dummy prior test components).

Each builder creates the module right after `torch.manual_seed(0)`, saves it into `path` with
`save_pretrained`, and returns it loaded back with `from_pretrained` in eval mode, as a user gets it.
Together with `tiny_models.tokenizers.make_clip_tokenizer` they fill a prior repo folder
(prior/, text_encoder/, tokenizer/, image_encoder/, image_processor/).
"""
from __future__ import annotations

import torch
from torch import nn

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

TINY_PRIOR = {"num_attention_heads": 2, "attention_head_dim": 12, "embedding_dim": 32, "num_layers": 1}
TINY_CLIP_TEXT = {
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_size": 32,
    "projection_dim": 32,
    "intermediate_size": 37,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 4,
    "num_hidden_layers": 5,
    "pad_token_id": 1,
    "vocab_size": 1000,
}
TINY_CLIP_VISION = {
    "hidden_size": 32,
    "image_size": 224,
    "projection_dim": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_channels": 3,
    "num_hidden_layers": 5,
    "patch_size": 14,
}
TINY_IMAGE_PROCESSOR = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "image_mean": CLIP_MEAN,
    "image_std": CLIP_STD,
    "resample": 3,
    "size": 224,
}


def build_reference_prior(path: str):
    """diffusers PriorTransformer (tiny), clip_std replaced by ones; saved to `path`, returned reloaded."""
    from diffusers import PriorTransformer

    torch.manual_seed(0)
    model = PriorTransformer(**TINY_PRIOR)
    model.clip_std = nn.Parameter(torch.ones(model.clip_std.shape))
    model.save_pretrained(path)
    return PriorTransformer.from_pretrained(path).eval()


def build_reference_clip_text(path: str):
    """transformers CLIPTextModelWithProjection (tiny, vocab 1000); saved to `path`, returned reloaded."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    model = CLIPTextModelWithProjection(CLIPTextConfig(**TINY_CLIP_TEXT))
    model.save_pretrained(path)
    return CLIPTextModelWithProjection.from_pretrained(path, local_files_only=True).eval()


def build_reference_clip_vision(path: str):
    """transformers CLIPVisionModelWithProjection (tiny, 224 px); saved to `path`, returned reloaded."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_VISION))
    model.save_pretrained(path)
    return CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True).eval()


def make_clip_image_processor(path: str):
    """CLIPImageProcessor with CLIP's resize/crop/normalization; saved to `path`, returned reloaded."""
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(**TINY_IMAGE_PROCESSOR).save_pretrained(path)
    return CLIPImageProcessor.from_pretrained(path, local_files_only=True)
