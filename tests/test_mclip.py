"""Kandinsky 2.1 M-CLIP text encoder: parity with diffusers' MultilingualCLIP and KandinskyPipeline._encode_prompt."""
import json
import os
from types import SimpleNamespace

import pytest
import torch
from diffusers import KandinskyPipeline
from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig as DiffusersMCLIPConfig
from diffusers.pipelines.kandinsky.text_encoder import MultilingualCLIP
from safetensors.torch import load_file, save_file
from tiny_models.mclip import build_reference_mclip, make_xlmr_tokenizer

from kandinsky_core.loading.strict import CheckpointMismatchError
from kandinsky_core.models.mclip import (
    K21_MCLIP,
    K21_MCLIP_CONFIG,
    MAX_LENGTH,
    MCLIPConfig,
    MultilingualTextEncoder,
    encode_text,
    load_mclip,
    load_xlmr_tokenizer,
)

PROMPTS = ["horse", "red cat, 4k photo"]
LONG_PROMPT = " ".join(["a golden dragon flying over the city at night"] * 12)  # > 77 tokens


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("mclip")
    reference = build_reference_mclip(root / "text_encoder")
    make_xlmr_tokenizer(root / "tokenizer")
    return SimpleNamespace(
        root=root,
        reference=reference,
        ours=load_mclip(str(root / "text_encoder")),
        tokenizer=load_xlmr_tokenizer(str(root / "tokenizer")),
    )


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def test_tokenizer_is_xlmr_layout(tiny):
    tok = tiny.tokenizer
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok(PROMPTS + [LONG_PROMPT])["input_ids"]
    assert all(row[0] == 0 and row[-1] == 2 for row in ids)
    assert max(max(row) for row in ids) < 1005
    assert 3 not in ids[0] + ids[1]  # plain English prompts need no <unk>


def test_state_dict_matches_diffusers(tiny):
    ours = {k: v.shape for k, v in tiny.ours.state_dict().items()}
    ref = {k: v.shape for k, v in tiny.reference.state_dict().items()}
    assert ours == ref
    assert "transformer.pooler.dense.weight" in ours and "LinearTransformation.weight" in ours


def test_forward_parity(tiny):
    batch = tiny.tokenizer(PROMPTS, padding="longest", return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # the short prompt is padded
    with torch.no_grad():
        ref_pooled, ref_hidden = tiny.reference(batch["input_ids"], batch["attention_mask"])
        pooled, hidden = tiny.ours(batch["input_ids"], batch["attention_mask"])
    assert pooled.shape == (2, 32) and hidden.shape == ref_hidden.shape
    assert _max_diff(pooled, ref_pooled) <= 1e-5
    assert _max_diff(hidden, ref_hidden) <= 1e-5


def test_encode_text_matches_pipeline_encode_prompt(tiny):
    # Runs diffusers' own KandinskyPipeline._encode_prompt; it only touches self.tokenizer / self.text_encoder.
    pipe = SimpleNamespace(tokenizer=tiny.tokenizer, text_encoder=tiny.reference)
    prompts = PROMPTS + [LONG_PROMPT]
    with torch.no_grad():
        ref_pooled, ref_hidden, ref_mask = KandinskyPipeline._encode_prompt(
            pipe, prompts, torch.device("cpu"), 1, True, None
        )
    # diffusers returns [uncond (""), cond]; encode the same rows in one call.
    pooled, hidden, mask = encode_text(tiny.ours, tiny.tokenizer, [""] * len(prompts) + prompts)
    assert pooled.shape == (6, 32) and hidden.shape == (6, MAX_LENGTH, 32) and mask.shape == (6, MAX_LENGTH)
    assert torch.equal(mask, ref_mask)
    assert mask[-1].all()  # the long prompt was truncated to 77 tokens
    assert _max_diff(pooled, ref_pooled) <= 1e-5
    assert _max_diff(hidden, ref_hidden) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(tiny, dtype):
    model = load_mclip(str(tiny.root / "text_encoder"), dtype=dtype)
    assert all(p.dtype == dtype for p in model.parameters())
    pooled, hidden, _ = encode_text(model, tiny.tokenizer, PROMPTS)
    ref_pooled, ref_hidden, _ = encode_text(tiny.ours, tiny.tokenizer, PROMPTS)
    assert pooled.dtype == dtype and hidden.dtype == dtype
    assert _max_diff(pooled, ref_pooled) < 0.1
    assert _max_diff(hidden, ref_hidden) < 0.1


def test_legacy_position_ids_key_is_accepted(tiny, tmp_path):
    src = tiny.root / "text_encoder"
    state = load_file(str(src / "model.safetensors"))
    state["transformer.embeddings.position_ids"] = torch.arange(512)[None]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    model = load_mclip(str(tmp_path))
    batch = tiny.tokenizer(PROMPTS, padding="longest", return_tensors="pt")
    with torch.no_grad():
        hidden = model(batch["input_ids"], batch["attention_mask"])[1]
        assert torch.equal(hidden, tiny.ours(batch["input_ids"], batch["attention_mask"])[1])


def test_wrong_weights_raise(tiny, tmp_path):
    src = tiny.root / "text_encoder"
    state = load_file(str(src / "model.safetensors"))
    del state["transformer.pooler.dense.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    with pytest.raises(CheckpointMismatchError, match="pooler.dense.weight"):
        load_mclip(str(tmp_path))


def test_config_from_dict():
    legacy = dict(K21_MCLIP_CONFIG, transformerDimSize=1024, imageDimSize=768)
    del legacy["transformerDimensions"], legacy["numDims"]
    assert MCLIPConfig.from_dict(legacy) == K21_MCLIP
    assert MCLIPConfig.from_dict({"_name_or_path": "x", "hidden_dropout_prob": 0.3, **K21_MCLIP_CONFIG}) == K21_MCLIP
    for bad in ({"position_embedding_type": "relative_key"}, {"model_type": "xlm-roberta"}, {"hidden_size": 768}):
        with pytest.raises(ValueError):
            MCLIPConfig.from_dict({**K21_MCLIP_CONFIG, **bad})


def test_tiny_config_roundtrip(tiny):
    with open(os.path.join(tiny.root, "text_encoder", "config.json"), encoding="utf-8") as f:
        config = MCLIPConfig.from_dict(json.load(f))
    assert (config.hidden_size, config.numDims, config.num_hidden_layers, config.vocab_size) == (32, 32, 5, 1005)


def test_full_size_preset_on_meta():
    with torch.device("meta"):
        ours = MultilingualTextEncoder(K21_MCLIP)
        ref = MultilingualCLIP(DiffusersMCLIPConfig(**K21_MCLIP_CONFIG))
    assert sum(p.numel() for p in ours.parameters()) == 560_677_632
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert ours.LinearTransformation.weight.shape == (768, 1024)
