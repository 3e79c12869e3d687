"""Kandinsky 2.1 / 2.2 prior configuration (diffusers `PriorTransformer` config.json) and the full-size
transformers configs of the prior's CLIP encoders.

`PriorConfig` fields mirror the diffusers config keys with the null sizes resolved the way diffusers
resolves them. Only the Kandinsky layout is supported (text hidden states + pooled text embedding + time +
latent + learned "prd" token); the Shap-E style variants (`added_emb_type` None, no encoder projection)
are rejected by `from_dict` with a message naming the key.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .checks import check_int

logger = logging.getLogger(__name__)

# Tokens appended after the text tokens: pooled text embedding, time, noisy latent, prd.
EXTRA_TOKENS = 4
ACTIVATIONS = ("silu", "swish", "mish", "gelu", "relu")  # diffusers get_activation names
# Bounds of the config's sizes (configs/checks.py): several times the 2.2 prior's (20 layers, 2048 wide).
MAX_WIDTH = 16384
MAX_LAYERS = 128
MAX_TOKENS = 1024
MAX_HEADS = 256

# diffusers PriorTransformer defaults for the keys we read (used when config.json omits them).
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "num_attention_heads": 32,
    "attention_head_dim": 64,
    "num_layers": 20,
    "embedding_dim": 768,
    "num_embeddings": 77,
    "additional_embeddings": 4,
    "time_embed_act_fn": "silu",
    "norm_in_type": None,
    "embedding_proj_norm_type": None,
    "encoder_hid_proj_type": "linear",
    "added_emb_type": "prd",
    "time_embed_dim": None,
    "embedding_proj_dim": None,
    "clip_embed_dim": None,
}
# Keys that do not change inference (dropout is inactive in eval mode).
_IGNORED_KEYS = ("dropout",)


def _check(key: str, value: Any, allowed: tuple, hint: str) -> None:
    if value not in allowed:
        raise ValueError(
            f"Prior config key {key!r} = {value!r} is not supported; supported: {list(allowed)}. {hint}"
        )


@dataclass(frozen=True)
class PriorConfig:
    num_attention_heads: int = 32  # heads of every self-attention
    attention_head_dim: int = 64  # per-head width; inner width = heads * head dim (2048)
    num_layers: int = 20  # pre-LN transformer blocks
    embedding_dim: int = 768  # CLIP embedding / text hidden width fed in (768 for 2.1, 1280 for 2.2)
    num_embeddings: int = 77  # text tokens (CLIP context length)
    additional_embeddings: int = 4  # tokens after the text: pooled text, time, latent, prd
    time_embed_act_fn: str = "silu"  # activation inside the time MLP
    norm_in_type: str | None = None  # None or "layer": LayerNorm on the token sequence before the blocks
    embedding_proj_norm_type: str | None = None  # None or "layer": LayerNorm on the pooled text embedding
    time_embed_dim: int = 2048  # hidden width of the time MLP (null in config -> inner width)
    embedding_proj_dim: int = 768  # width of the pooled text embedding (null in config -> embedding_dim)
    clip_embed_dim: int = 768  # width of the predicted image embedding (null in config -> embedding_dim)

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def seq_len(self) -> int:
        return self.num_embeddings + self.additional_embeddings

    def __post_init__(self) -> None:
        w = "Prior config"
        check_int(w, "num_attention_heads", self.num_attention_heads, 1, MAX_HEADS)
        check_int(w, "attention_head_dim", self.attention_head_dim, 1, MAX_WIDTH)
        check_int(w, "num_attention_heads x attention_head_dim", self.inner_dim, 1, MAX_WIDTH)
        check_int(w, "num_layers", self.num_layers, 1, MAX_LAYERS)
        check_int(w, "num_embeddings", self.num_embeddings, 1, MAX_TOKENS)
        for key in ("embedding_dim", "time_embed_dim", "embedding_proj_dim", "clip_embed_dim"):
            check_int(w, key, getattr(self, key), 1, MAX_WIDTH)
        _check("additional_embeddings", self.additional_embeddings, (EXTRA_TOKENS,),
               "The Kandinsky prior appends exactly 4 tokens (pooled text, time, latent, prd).")
        _check("time_embed_act_fn", self.time_embed_act_fn, ACTIVATIONS, "Use one of diffusers' activation names.")
        _check("norm_in_type", self.norm_in_type, (None, "layer"), "Use null or 'layer'.")
        _check("embedding_proj_norm_type", self.embedding_proj_norm_type, (None, "layer"), "Use null or 'layer'.")

    @classmethod
    def from_dict(cls, d: dict) -> "PriorConfig":
        """Read a diffusers PriorTransformer config.json dict (missing keys take the diffusers defaults)."""
        cfg = {k: v for k, v in d.items() if not k.startswith("_") and k not in _IGNORED_KEYS}
        unknown = sorted(set(cfg) - set(_DIFFUSERS_DEFAULTS))
        if unknown:
            logger.warning("Prior config: ignoring unknown keys %s", unknown)
        v = {**_DIFFUSERS_DEFAULTS, **{k: cfg[k] for k in cfg if k in _DIFFUSERS_DEFAULTS}}
        _check("encoder_hid_proj_type", v.pop("encoder_hid_proj_type"), ("linear",),
               "The Kandinsky prior always projects the CLIP text hidden states; other priors (e.g. Shap-E) "
               "are not supported.")
        _check("added_emb_type", v.pop("added_emb_type"), ("prd",),
               "The Kandinsky prior reads its prediction from the learned 'prd' token; other priors (e.g. "
               "Shap-E) are not supported.")
        act = v["time_embed_act_fn"]
        v["time_embed_act_fn"] = act.lower() if isinstance(act, str) else act
        check_int("Prior config", "num_attention_heads", v["num_attention_heads"], 1, MAX_HEADS)
        check_int("Prior config", "attention_head_dim", v["attention_head_dim"], 1, MAX_WIDTH)
        inner = v["num_attention_heads"] * v["attention_head_dim"]
        # diffusers resolves these with `x or default`, so 0 also means "default".
        v["time_embed_dim"] = v["time_embed_dim"] or inner
        v["embedding_proj_dim"] = v["embedding_proj_dim"] or v["embedding_dim"]
        v["clip_embed_dim"] = v["clip_embed_dim"] or v["embedding_dim"]
        return cls(**v)


K21_PRIOR = PriorConfig(embedding_dim=768, time_embed_dim=2048, embedding_proj_dim=768, clip_embed_dim=768)
K22_PRIOR = PriorConfig(embedding_dim=1280, time_embed_dim=2048, embedding_proj_dim=1280, clip_embed_dim=1280)

# Full-size transformers configs of the prior encoders (kwargs for CLIPTextConfig / CLIPVisionConfig).
# eos/bos are the real vocabulary ids; the pooled output is the EOS token either way (it has the highest id).
K21_CLIP_TEXT: dict[str, Any] = {  # OpenAI CLIP ViT-L/14 text tower
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}
K21_CLIP_VISION: dict[str, Any] = {  # OpenAI CLIP ViT-L/14 vision tower
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "projection_dim": 768,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
K22_CLIP_TEXT: dict[str, Any] = {  # OpenCLIP ViT-bigG/14 text tower
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "projection_dim": 1280,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}
K22_CLIP_VISION: dict[str, Any] = {  # OpenCLIP ViT-bigG/14 vision tower
    "hidden_size": 1664,
    "intermediate_size": 8192,
    "projection_dim": 1280,
    "num_hidden_layers": 48,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
