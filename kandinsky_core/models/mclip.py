"""Kandinsky 2.1 multilingual text encoder (M-CLIP): XLM-RoBERTa + a linear projection.

Same function and state-dict keys as diffusers' `MultilingualCLIP` (`transformer.*` of an
`XLMRobertaModel` with its pooler, `LinearTransformation.{weight,bias}`). The decoder reads both
outputs: the projected masked-mean embedding (B, 768) and the token states (B, 77, 1024).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaModel
from transformers.activations import ACT2FN

from ..configs.checks import check_float, check_int

logger = logging.getLogger(__name__)

MAX_LENGTH = 77  # KandinskyPipeline tokenizes to exactly 77 tokens (pad to max, truncate)

# diffusers MCLIPConfig defaults (XLMRobertaConfig defaults + M-CLIP's 1024 -> 768), used for absent keys.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 1,
    "transformerDimensions": 1024,
    "numDims": 768,
}
# Old M-CLIP configs name the two projection sizes by their constructor arguments.
_ALIASES = {"transformerDimensions": "transformerDimSize", "numDims": "imageDimSize"}
# Bounds of the config's sizes (configs/checks.py): several times XLM-R large's (24 layers, 1024 wide).
_RANGES: dict[str, tuple[int, int]] = {
    "vocab_size": (1, 1_000_000),
    "hidden_size": (1, 8192),
    "num_hidden_layers": (1, 128),
    "num_attention_heads": (1, 256),
    "intermediate_size": (1, 65536),
    "max_position_embeddings": (1, 8192),
    "type_vocab_size": (1, 16),
    "transformerDimensions": (1, 8192),
    "numDims": (1, 8192),
}


@dataclass(frozen=True)
class MCLIPConfig:
    """M-CLIP text encoder config; field names are the config.json keys (hence the camelCase pair)."""

    vocab_size: int  # XLM-R token vocabulary (250002)
    hidden_size: int  # transformer width (1024)
    num_hidden_layers: int  # transformer layers (24)
    num_attention_heads: int  # heads per layer (16)
    intermediate_size: int  # FFN width (4096)
    hidden_act: str  # FFN activation ("gelu", exact erf form)
    max_position_embeddings: int  # learned positions (514 = 512 + pad offset)
    type_vocab_size: int  # token-type embeddings (1; only type 0 is used)
    layer_norm_eps: float  # LayerNorm eps (1e-5)
    pad_token_id: int  # pad id: padding_idx of the embeddings and base of the position ids (1)
    transformerDimensions: int  # input width of LinearTransformation (= hidden_size)
    numDims: int  # output width of LinearTransformation (768, the CLIP ViT-L/14 space)

    def __post_init__(self) -> None:
        for key, (low, high) in _RANGES.items():
            check_int("M-CLIP config", key, getattr(self, key), low, high)
        last_id = min(self.vocab_size, self.max_position_embeddings) - 1  # pad id indexes both tables
        check_int("M-CLIP config", "pad_token_id", self.pad_token_id, 0, last_id)
        check_float("M-CLIP config", "layer_norm_eps", self.layer_norm_eps, 0.0, 1.0, low_open=True)
        if self.transformerDimensions != self.hidden_size:
            raise ValueError(
                f"M-CLIP config: transformerDimensions={self.transformerDimensions} must equal hidden_size="
                f"{self.hidden_size} (the projection reads XLM-R's hidden states); fix text_encoder/config.json."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"M-CLIP config: hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}."
            )
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"M-CLIP config key 'hidden_act' = {self.hidden_act!r} is not a transformers activation "
                f"(e.g. 'gelu'); fix text_encoder/config.json."
            )

    @classmethod
    def from_dict(cls, d: dict) -> "MCLIPConfig":
        """Read a text_encoder/config.json dict (model_type "M-CLIP"); keys without effect are ignored."""
        model_type = d.get("model_type", "M-CLIP")
        if model_type != "M-CLIP":
            raise ValueError(
                f"Text encoder config has model_type={model_type!r}; the Kandinsky 2.1 text encoder is 'M-CLIP' "
                "(diffusers MultilingualCLIP). Point the loader at kandinsky-2-1/text_encoder."
            )
        for key, supported in (("position_embedding_type", "absolute"), ("is_decoder", False)):
            if key in d and d[key] != supported:
                raise ValueError(
                    f"M-CLIP config key {key!r} = {d[key]!r} is not supported (only {supported!r}, what the "
                    "Kandinsky 2.1 text encoder uses)."
                )
        values = {}
        for key, default in _DEFAULTS.items():
            alias = _ALIASES.get(key)
            values[key] = d.get(key, d.get(alias, default) if alias else default)
        if values["pad_token_id"] is None:
            raise ValueError("M-CLIP config key 'pad_token_id' is null; XLM-R needs it (1) for its position ids.")
        return cls(**values)

    def to_xlmr_config(self) -> XLMRobertaConfig:
        """The transformers config of the inner XLMRobertaModel (dropout off: inference only).

        Eager attention, as diffusers' MultilingualCLIP always runs: SDPA differs by ~1e-7, which the 2.1
        decoder amplifies past pixel parity."""
        config = XLMRobertaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            pad_token_id=self.pad_token_id,
        )
        config._attn_implementation = "eager"
        return config


# kandinsky-community/kandinsky-2-1 text_encoder/config.json (XLM-R large + Linear 1024 -> 768).
K21_MCLIP_CONFIG: dict[str, Any] = {
    "model_type": "M-CLIP",
    "vocab_size": 250002,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "gelu",
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-05,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "position_embedding_type": "absolute",
    "transformerDimensions": 1024,
    "numDims": 768,
}
K21_MCLIP = MCLIPConfig.from_dict(K21_MCLIP_CONFIG)  # 560,677,632 parameters (pooler included)


class MultilingualTextEncoder(nn.Module):
    """M-CLIP: XLM-R token states and their mask-weighted mean projected by a Linear layer."""

    def __init__(self, config: MCLIPConfig):
        super().__init__()
        self.config = config
        # With its pooler (add_pooling_layer=True) as in diffusers: the checkpoint carries pooler weights.
        self.transformer = XLMRobertaModel(config.to_xlmr_config())
        self.LinearTransformation = nn.Linear(config.transformerDimensions, config.numDims)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids and 0/1 mask -> (projected pooled (B, numDims), last hidden state (B, L, hidden))."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]  # B, L, D
        # Mean over real tokens (never empty: <s> and </s> are always present); same op order as diffusers.
        summed = (hidden * attention_mask.unsqueeze(2)).sum(dim=1)  # B, L, D -> B, D
        pooled = summed / attention_mask.sum(dim=1)[:, None]
        return self.LinearTransformation(pooled), hidden


@torch.no_grad()
def encode_text(
    text_encoder: MultilingualTextEncoder, tokenizer: Any, prompts: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenize as KandinskyPipeline._encode_prompt does (77 tokens, padded, truncated) and encode.

    Returns pooled (N, numDims), hidden (N, 77, hidden_size) and the int64 attention mask (N, 77).
    """
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"encode_text expects a non-empty list of prompt strings, got {prompts!r}.")
    tokens = tokenizer(
        list(prompts),
        padding="max_length",
        truncation=True,
        max_length=MAX_LENGTH,
        return_attention_mask=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]
    if max(lengths) > MAX_LENGTH:
        logger.warning(
            "Prompt too long for the Kandinsky 2.1 text encoder: %d tokens, only the first %d are used.",
            max(lengths),
            MAX_LENGTH,
        )
    device = text_encoder.LinearTransformation.weight.device
    input_ids = tokens["input_ids"].to(device)
    mask = tokens["attention_mask"].to(device)
    pooled, hidden = text_encoder(input_ids=input_ids, attention_mask=mask)
    return pooled, hidden, mask


def load_mclip(
    folder: str, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> MultilingualTextEncoder:
    """Build from folder/config.json on the meta device, then load the weights strictly (the core's reader:
    safetensors or tensor-only pickles, single or sharded; mismatches name the key)."""
    from ..loading.repo import read_component_config
    from ..loading.strict import empty_weights, load_strict
    from ..loading.transformers_models import align_state_dict, check_config_sizes
    from ..loading.weights import read_component_weights

    raw = read_component_config(folder)
    check_config_sizes(raw, "text_encoder", folder)
    config = MCLIPConfig.from_dict(raw)
    state = read_component_weights(folder)
    with empty_weights():
        model = MultilingualTextEncoder(config)
    state = align_state_dict(model, state, "text_encoder")  # drops index buffers older transformers saved
    load_strict(model, state, "text_encoder", "Kandinsky 2.1 M-CLIP text encoder", dtype=dtype, device=device)
    return model.eval().requires_grad_(False)


def load_xlmr_tokenizer(folder: str) -> Any:
    """The XLM-R sentencepiece tokenizer of kandinsky-2-1/tokenizer (local files only)."""
    if not any(os.path.isfile(os.path.join(folder, n)) for n in ("tokenizer.json", "sentencepiece.bpe.model")):
        raise ValueError(
            f"No tokenizer.json or sentencepiece.bpe.model in {folder!r}; expected the kandinsky-2-1 tokenizer "
            "folder (XLM-RoBERTa) in diffusers layout."
        )
    from transformers import XLMRobertaTokenizerFast  # transformers 5 aliases it to XLMRobertaTokenizer

    try:
        tokenizer = XLMRobertaTokenizerFast.from_pretrained(folder, local_files_only=True)
    except (ValueError, OSError, ImportError) as err:  # no tokenizer.json and no converter deps (protobuf)
        spm_file = os.path.join(folder, "sentencepiece.bpe.model")
        if not os.path.isfile(spm_file):
            raise
        from .xlmr_spm import SentencePieceXLMRTokenizer

        logger.info("Fast XLM-R tokenizer unavailable (%s); reading %s with sentencepiece.", err, spm_file)
        tokenizer = SentencePieceXLMRTokenizer(spm_file)
    if (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) != (0, 1, 2):
        logger.warning(
            "XLM-R tokenizer in %r has <s>/<pad>/</s> ids %s, expected (0, 1, 2).",
            folder,
            (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id),
        )
    return tokenizer
