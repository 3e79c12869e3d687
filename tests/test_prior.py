"""Kandinsky prior transformer and CLIP glue vs diffusers (oracle) on tiny models; full-size presets on meta."""
import logging
import os

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file
from tiny_models.prior import (
    build_reference_clip_text,
    build_reference_clip_vision,
    build_reference_prior,
    make_clip_image_processor,
)
from tiny_models.tokenizers import make_clip_tokenizer

from kandinsky_core.configs.prior import (
    K21_CLIP_TEXT,
    K21_CLIP_VISION,
    K21_PRIOR,
    K22_CLIP_TEXT,
    K22_CLIP_VISION,
    K22_PRIOR,
    PriorConfig,
)
from kandinsky_core.models.clip import (
    encode_images,
    encode_prompts,
    load_clip_image_encoder,
    load_clip_image_processor,
    load_clip_text_encoder,
    load_clip_tokenizer,
    zero_image_embeds,
)
from kandinsky_core.models.prior import KandinskyPrior

PROMPTS = ["horse", "a red cat, 4k photo"]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A tiny prior repo folder built with diffusers/transformers (spec 5.1) and the reference modules."""
    root = str(tmp_path_factory.mktemp("prior_repo"))
    return {
        "root": root,
        "prior": build_reference_prior(os.path.join(root, "prior")),
        "text_encoder": build_reference_clip_text(os.path.join(root, "text_encoder")),
        "image_encoder": build_reference_clip_vision(os.path.join(root, "image_encoder")),
        "image_processor": make_clip_image_processor(os.path.join(root, "image_processor")),
        "tokenizer_path": make_clip_tokenizer(os.path.join(root, "tokenizer")),
    }


@pytest.fixture(scope="module")
def pipe(repo):
    from diffusers import KandinskyV22PriorEmb2EmbPipeline, UnCLIPScheduler
    from transformers import CLIPTokenizer

    scheduler = UnCLIPScheduler(
        variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
        clip_sample=True, clip_sample_range=10.0,
    )
    return KandinskyV22PriorEmb2EmbPipeline(
        prior=repo["prior"], image_encoder=repo["image_encoder"], text_encoder=repo["text_encoder"],
        tokenizer=CLIPTokenizer.from_pretrained(repo["tokenizer_path"], local_files_only=True),
        scheduler=scheduler, image_processor=repo["image_processor"],
    )


def ours_from(path: str, reference) -> KandinskyPrior:
    model = KandinskyPrior(PriorConfig.from_dict(dict(reference.config)))
    model.load_state_dict(load_file(os.path.join(path, "diffusion_pytorch_model.safetensors")), strict=True)
    return model.eval()


def prior_inputs(dim: int, proj_dim: int | None = None, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2, 77, dtype=torch.bool)
    mask[0, :5] = True
    mask[1, :12] = True
    return {
        "hidden_states": torch.randn(2, dim, generator=g),
        "proj_embedding": torch.randn(2, proj_dim or dim, generator=g),
        "encoder_hidden_states": torch.randn(2, 77, dim, generator=g),
        "attention_mask": mask,
    }


# ----------------------------------------------------------------------------------------------- config


def test_config_from_dict(repo):
    cfg = PriorConfig.from_dict(dict(repo["prior"].config))
    assert (cfg.inner_dim, cfg.embedding_dim, cfg.time_embed_dim, cfg.clip_embed_dim) == (24, 32, 24, 32)
    assert PriorConfig.from_dict({}) == K21_PRIOR
    assert PriorConfig.from_dict({"embedding_dim": 1280, "dropout": 0.0, "_class_name": "PriorTransformer"}) == K22_PRIOR
    for key, value in [("added_emb_type", None), ("encoder_hid_proj_type", None), ("norm_in_type", "group"),
                       ("additional_embeddings", 3), ("time_embed_act_fn", "tanh")]:
        with pytest.raises(ValueError, match=key):
            PriorConfig.from_dict({key: value})


# ------------------------------------------------------------------------------------------ prior forward


@pytest.mark.parametrize("timestep", [37, torch.tensor([999, 0])])
def test_prior_forward_parity(repo, timestep):
    ref = repo["prior"]
    ours = ours_from(os.path.join(repo["root"], "prior"), ref)
    inputs = prior_inputs(32)
    with torch.no_grad():
        expected = ref(timestep=timestep, **inputs).predicted_image_embedding
        got = ours(timestep=timestep, **inputs)
        assert max_diff(got, expected) <= 1e-5
        x = torch.randn(2, 32)
        assert max_diff(ours.post_process_latents(x), ref.post_process_latents(x)) == 0
        # No mask at all (diffusers then applies neither padding nor causal masking).
        inputs["attention_mask"] = None
        assert max_diff(ours(timestep=timestep, **inputs), ref(timestep=timestep, **inputs)[0]) <= 1e-5


def test_prior_forward_parity_all_weights_random(repo):
    """Randomize every tensor (positional/prd/clip stats start as zeros) and use a variant config
    (input norms, gelu time MLP, distinct projection widths) so every path is exercised. Two layers: with one
    layer the prd row never sees the causal mask (it is the last token), so only a deeper prior tests it."""
    from diffusers import PriorTransformer

    torch.manual_seed(0)
    ref = PriorTransformer(
        num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=32, norm_in_type="layer",
        embedding_proj_norm_type="layer", time_embed_act_fn="gelu", time_embed_dim=40, embedding_proj_dim=20,
        clip_embed_dim=28,
    ).eval()
    g = torch.Generator().manual_seed(3)
    state = {k: v + 0.5 * torch.randn(v.shape, generator=g) for k, v in ref.state_dict().items()}
    ref.load_state_dict(state, strict=True)
    ours = KandinskyPrior(PriorConfig.from_dict(dict(ref.config))).eval()
    ours.load_state_dict(state, strict=True)
    inputs = prior_inputs(32, proj_dim=20, seed=4)
    with torch.no_grad():
        expected = ref(timestep=torch.tensor([5, 640]), **inputs).predicted_image_embedding
        got = ours(timestep=torch.tensor([5, 640]), **inputs)
        x = torch.randn(2, 28)
        assert max_diff(ours.post_process_latents(x), ref.post_process_latents(x)) == 0
    assert got.shape == (2, 28)
    assert max_diff(got, expected) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_prior_low_precision(repo, dtype):
    ours = ours_from(os.path.join(repo["root"], "prior"), repo["prior"])
    inputs = prior_inputs(32)
    with torch.no_grad():
        full = ours(timestep=500, **inputs)
        low = ours.to(dtype)(timestep=500, **inputs)
    assert low.dtype == dtype
    assert torch.isfinite(low).all()
    assert max_diff(low, full) <= 0.05 * full.abs().max().item()


def test_prior_meta_forward():
    with torch.device("meta"):
        model = KandinskyPrior(PriorConfig(num_attention_heads=2, attention_head_dim=8, num_layers=1,
                                           embedding_dim=16, embedding_proj_dim=16, clip_embed_dim=16,
                                           time_embed_dim=16))
        out = model(torch.randn(3, 16), 10, torch.randn(3, 16), torch.randn(3, 77, 16), torch.ones(3, 77, dtype=torch.bool))
    assert out.shape == (3, 16) and out.device.type == "meta"


@pytest.mark.parametrize("preset,embedding_dim,params", [(K21_PRIOR, 768, 1_022_030_080), (K22_PRIOR, 1280, 1_026_225_920)])
def test_full_size_prior_on_meta(preset, embedding_dim, params):
    from diffusers import PriorTransformer

    with torch.device("meta"):
        ours = KandinskyPrior(preset)
        ref = PriorTransformer(embedding_dim=embedding_dim)
    assert sum(p.numel() for p in ours.parameters()) == params
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert ours_shapes == ref_shapes
    assert PriorConfig.from_dict(dict(ref.config)) == preset


@pytest.mark.parametrize(
    "text,vision,text_params,vision_params",
    [(K21_CLIP_TEXT, K21_CLIP_VISION, 123_650_304, 303_966_208), (K22_CLIP_TEXT, K22_CLIP_VISION, 694_659_840, 1_844_907_264)],
)
def test_full_size_clip_presets_on_meta(text, vision, text_params, vision_params):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        text_model = CLIPTextModelWithProjection(CLIPTextConfig(**text))
        vision_model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision))
    assert sum(p.numel() for p in text_model.parameters()) == text_params
    assert sum(p.numel() for p in vision_model.parameters()) == vision_params


# ----------------------------------------------------------------------------------------------- CLIP glue


def test_tokenizer_round_trip(repo):
    tok = load_clip_tokenizer(repo["tokenizer_path"])
    assert tok.model_max_length == 77 and len(tok) < 1000
    enc = tok(PROMPTS + ["Émoji 🐱, MIXED case!"], padding="max_length", max_length=77, truncation=True,
              return_tensors="pt")
    ids, mask = enc.input_ids, enc.attention_mask
    assert ids.shape == (3, 77) and int(ids.max()) < 1000
    assert (ids[:, 0] == tok.bos_token_id).all()
    assert tok.eos_token_id == int(ids.max())  # CLIP pools the highest id: the EOS token
    assert tok.convert_ids_to_tokens(ids[0, :3].tolist()) == ["<|startoftext|>", "horse</w>", "<|endoftext|>"]
    assert mask.sum(1).tolist() == [3, 12, 20]
    decoded = [tok.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(ids, mask)]
    assert decoded[0] == "horse"
    assert decoded[1].replace(" ", "") == "aredcat,4kphoto"
    assert decoded[2].replace(" ", "") == "émoji🐱,mixedcase!"
    for text in decoded:  # decode -> encode is stable
        assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_encode_prompts_matches_diffusers(repo, pipe):
    text_encoder = load_clip_text_encoder(os.path.join(repo["root"], "text_encoder"), torch.float32, "cpu")
    tokenizer = load_clip_tokenizer(repo["tokenizer_path"])
    assert not text_encoder.training
    with torch.no_grad():
        ref = pipe._encode_prompt(PROMPTS, "cpu", 1, False)
        ref_cfg = pipe._encode_prompt(PROMPTS, "cpu", 1, True, negative_prompt=["lowres", "ugly, blurry"])
    got = encode_prompts(text_encoder, tokenizer, PROMPTS)
    neg = encode_prompts(text_encoder, tokenizer, ["lowres", "ugly, blurry"])
    assert got[0].shape == (2, 32) and got[1].shape == (2, 77, 32) and got[2].dtype == torch.bool
    for a, b in zip(got, ref):
        assert max_diff(a, b) <= 1e-6
    for a, b, c in zip(neg, got, ref_cfg):  # diffusers concatenates [uncond, cond]
        assert max_diff(torch.cat([a, b]), c) <= 1e-6
    assert torch.equal(got[2], ref[2])


def test_encode_prompts_warns_on_truncation(repo, caplog):
    text_encoder = repo["text_encoder"]
    tokenizer = load_clip_tokenizer(repo["tokenizer_path"])
    long_prompt = " ".join(["horse"] * 100)
    with caplog.at_level(logging.WARNING, logger="kandinsky_core.models.clip"):
        embeds, hidden, mask = encode_prompts(text_encoder, tokenizer, ["cat", long_prompt])
    assert "truncated" in caplog.text
    assert hidden.shape == (2, 77, 32) and mask[1].all()


def test_encode_images_matches_diffusers(repo, pipe):
    image_encoder = load_clip_image_encoder(os.path.join(repo["root"], "image_encoder"), torch.float32, "cpu")
    processor = load_clip_image_processor(os.path.join(repo["root"], "image_processor"))
    rng = np.random.default_rng(0)
    pils = [PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(64, 96), (100, 80)]]
    with torch.no_grad():
        ref = pipe._encode_image(pils, "cpu", 1)  # emb2emb image path (list of PIL)
        ref_single = pipe.image_encoder(
            pipe.image_processor(pils[1], return_tensors="pt").pixel_values[0].unsqueeze(0)
        )["image_embeds"]  # interpolate image path (one PIL)
    got = encode_images(image_encoder, processor, pils)
    assert got.shape == (2, 32)
    assert max_diff(got, ref) <= 1e-6
    assert max_diff(encode_images(image_encoder, processor, pils[1]), ref_single) <= 1e-6

    # ComfyUI IMAGE (N, H, W, 3) float: equal to diffusers on the PIL images round(255 * x).
    comfy = torch.rand(2, 72, 88, 3, generator=torch.Generator().manual_seed(5))
    comfy_pils = [PIL.Image.fromarray(np.round(x.numpy() * 255).astype(np.uint8)) for x in comfy]
    with torch.no_grad():
        ref_comfy = pipe._encode_image(comfy_pils, "cpu", 1)
    assert max_diff(encode_images(image_encoder, processor, comfy), ref_comfy) <= 1e-6

    # Already-preprocessed pixels are fed as-is.
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref_pixels = pipe._encode_image(pixels, "cpu", 1)
    assert max_diff(encode_images(image_encoder, processor, pixels), ref_pixels) <= 1e-6

    with pytest.raises(ValueError, match="ComfyUI IMAGE"):
        encode_images(image_encoder, processor, torch.rand(1, 4, 32, 32))


def test_zero_image_embeds_matches_diffusers(repo, pipe):
    image_encoder = repo["image_encoder"]
    with torch.no_grad():
        ref = pipe.get_zero_embed(batch_size=3)
    got = zero_image_embeds(image_encoder, 3)
    assert got.shape == (3, 32)
    assert max_diff(got, ref) <= 1e-6
    assert torch.equal(got[0], got[2])


def test_loaders_honour_dtype(repo):
    enc = load_clip_text_encoder(os.path.join(repo["root"], "text_encoder"), torch.bfloat16, "cpu")
    assert next(enc.parameters()).dtype == torch.bfloat16 and not enc.training
    enc = load_clip_image_encoder(os.path.join(repo["root"], "image_encoder"), torch.float16, "cpu")
    assert next(enc.parameters()).dtype == torch.float16
    with pytest.raises(ValueError, match="does not exist"):
        load_clip_text_encoder(os.path.join(repo["root"], "missing"), torch.float32, "cpu")
