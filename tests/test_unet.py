"""Kandinsky 2.x decoder UNet: diffusers parity (tiny models), full-size structure, variant detection."""
import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_models.unet import UNET_KINDS, build_reference_unet, unet_config_dict

from kandinsky_core.configs import unet as unet_configs
from kandinsky_core.configs.unet import UNetConfig, UNetVariant, detect_unet_variant
from kandinsky_core.models.unet import KandinskyUNet

PARITY_TOL = 1e-5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """kind -> (diffusers reference in eval mode, our UNet loaded strictly from the same files, shapes)."""
    root = tmp_path_factory.mktemp("unets")
    out = {}
    for kind in UNET_KINDS:
        path = root / kind
        ref = build_reference_unet(kind, path)
        config = UNetConfig.from_dict(json.loads((path / "config.json").read_text()))
        state = load_file(str(path / "diffusion_pytorch_model.safetensors"))
        ours = KandinskyUNet(config).eval()
        ours.load_state_dict(state, strict=True)
        out[kind] = (ref, ours, {k: tuple(v.shape) for k, v in state.items()})
    return out


def _inputs(model: KandinskyUNet, batch: int, h: int, w: int, seed: int = 0):
    """Random latents + conditioning for `model`; returns (ours kwargs, diffusers extra kwargs)."""
    g = torch.Generator().manual_seed(seed)
    v = model.variant
    sample = torch.randn(batch, model.latent_channels, h, w, generator=g)
    image_embeds = torch.randn(batch, v.image_embed_dim, generator=g)
    kwargs, added, context = {}, {"image_embeds": image_embeds}, None
    if v.version == "2.1":
        text_embeds = torch.randn(batch, v.text_embed_dim, generator=g)
        context = torch.randn(batch, 77, v.text_hidden_dim, generator=g)
        kwargs.update(text_embeds=text_embeds, text_hidden_states=context)
        added["text_embeds"] = text_embeds
    if v.task == "depth":
        hint = torch.rand(batch, 3, 8 * h, 8 * w, generator=g)
        kwargs["hint"] = hint
        added["hint"] = hint
    return sample, image_embeds, kwargs, dict(encoder_hidden_states=context, added_cond_kwargs=added)


# (batch, latent h, latent w, timestep): int, 0-d tensor, (B,) tensor; one non-square latent, batch 2.
CASES = [(1, 16, 16, 999), (2, 8, 12, torch.tensor([3, 517])), (2, 8, 8, torch.tensor(250))]


@pytest.mark.parametrize("kind", UNET_KINDS)
def test_parity_with_diffusers(tiny, kind):
    ref, ours, _ = tiny[kind]
    for batch, h, w, t in CASES:
        sample, image_embeds, kwargs, ref_kwargs = _inputs(ours, batch, h, w)
        with torch.no_grad():
            expected = ref(sample, t, **ref_kwargs).sample
            got = ours(sample, t, image_embeds, **kwargs)
        assert got.shape == (batch, 8, h, w)
        assert expected.abs().max() > 0.1  # a real, non-degenerate output
        diff = (got - expected).abs().max().item()
        assert diff <= PARITY_TOL, f"{kind} B={batch} {h}x{w}: max abs diff {diff}"


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_half_precision_runs_close_to_fp32(tiny, dtype, tol):
    _, ours, _ = tiny["22_depth"]
    half = KandinskyUNet(ours.config).eval()
    half.load_state_dict(ours.state_dict())
    half.to(dtype)
    sample, image_embeds, kwargs, _ = _inputs(ours, 2, 8, 8)
    with torch.no_grad():
        expected = ours(sample, 500, image_embeds, **kwargs)
        got = half(sample, 500, image_embeds, **kwargs)
    assert got.dtype == dtype
    assert (got.float() - expected).abs().max().item() <= tol


FULL_SIZE = [
    ("K22_DECODER", 1_253_057_288, UNetVariant("2.2", "text2img", 1280, None, None)),
    ("K22_INPAINT", 1_253_074_568, UNetVariant("2.2", "inpaint", 1280, None, None)),
    ("K22_CONTROLNET_DEPTH", 1_253_429_212, UNetVariant("2.2", "depth", 1280, None, None)),
    ("K21_DECODER", 1_228_661_768, UNetVariant("2.1", "text2img", 768, 768, 1024)),
    ("K21_INPAINT", 1_228_679_048, UNetVariant("2.1", "inpaint", 768, 768, 1024)),
]


@pytest.mark.parametrize("name, n_params, variant", FULL_SIZE)
def test_full_size_presets_on_meta(name, n_params, variant):
    from diffusers import UNet2DConditionModel

    config = getattr(unet_configs, name)
    with torch.device("meta"):
        ours = KandinskyUNet(config)
        ref = UNet2DConditionModel(**dataclasses.asdict(config))
    assert sum(p.numel() for p in ours.parameters()) == n_params
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert detect_unet_variant(config, shapes) == variant == config.variant


def test_full_size_forward_shape_on_meta():
    with torch.device("meta"):
        unet = KandinskyUNet(unet_configs.K22_CONTROLNET_DEPTH)
        out = unet(torch.zeros(2, 4, 8, 16), 10, torch.zeros(2, 1280), hint=torch.zeros(2, 3, 64, 128))
    assert out.shape == (2, 8, 8, 16)


# ---------------------------------------------------------------------------------------------------
# Variant detection table


TINY_VARIANTS = {
    "22": UNetVariant("2.2", "text2img", 32, None, None),
    "22_inpaint": UNetVariant("2.2", "inpaint", 32, None, None),
    "22_depth": UNetVariant("2.2", "depth", 32, None, None),
    "21": UNetVariant("2.1", "text2img", 32, 32, 32),
    "21_inpaint": UNetVariant("2.1", "inpaint", 32, 32, 32),
}


@pytest.mark.parametrize("kind", UNET_KINDS)
def test_detect_variant(tiny, kind):
    _, ours, shapes = tiny[kind]
    assert detect_unet_variant(ours.config, shapes) == TINY_VARIANTS[kind]


@pytest.mark.parametrize(
    "config_kind, weights_kind, match",
    [
        ("22", "22_depth", r"conv_in\.weight.*depth ControlNet"),  # depth weights, plain 2.2 config
        ("22_inpaint", "22", r"conv_in\.weight.*\(32, 4, 3, 3\), expected \(32, 9, 3, 3\)"),
        ("21", "22", r"encoder_hid_proj\.image_embeds\.weight.*Kandinsky 2\.2 text2img"),
        ("22", "21", r"'encoder_hid_proj\.image_embeds\.weight' has shape \(320, 32\).*Kandinsky 2\.1 text2img"),
    ],
)
def test_detect_variant_mismatch(tiny, config_kind, weights_kind, match):
    config = tiny[config_kind][1].config
    with pytest.raises(ValueError, match=match):
        detect_unet_variant(config, tiny[weights_kind][2])


def test_detect_variant_rejects_forbidden_tensor(tiny):
    _, ours, shapes = tiny["22"]
    shapes = {**shapes, "add_embedding.input_hint_block.0.weight": (16, 3, 3, 3)}
    with pytest.raises(ValueError, match="contain 'add_embedding.input_hint_block.0.weight'"):
        detect_unet_variant(ours.config, shapes)


def test_detect_variant_rejects_unknown_combination():
    with pytest.raises(ValueError, match="in_channels=5.*matches no Kandinsky 2.x UNet variant"):
        dataclasses.replace(unet_configs.K22_DECODER, in_channels=5).variant


# ---------------------------------------------------------------------------------------------------
# Config parsing


def test_from_dict_reads_diffusers_config():
    d = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.42.1", "sample_size": 64,
         "dropout": 0.0, **unet_config_dict("21")}
    config = UNetConfig.from_dict(d)
    assert config.block_out_channels == (32, 64) and config.encoder_hid_dim == 32
    assert config.norm_num_groups == 32 and config.flip_sin_to_cos and config.freq_shift == 0
    full = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(unet_configs.K21_INPAINT).items()}
    assert UNetConfig.from_dict({**full, "class_embeddings_concat": None}) == unet_configs.K21_INPAINT


@pytest.mark.parametrize(
    "override, match",
    [
        ({"down_block_types": ["CrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"]},
         "'down_block_types' contains 'CrossAttnDownBlock2D'"),
        ({"resnet_time_scale_shift": "default"}, "'resnet_time_scale_shift' = 'default'"),
        ({"class_embed_type": "timestep"}, "'class_embed_type' = 'timestep'"),
        ({"encoder_hid_dim_type": "text_proj"}, "encoder_hid_dim_type='text_proj'"),
        ({"addition_embed_type": "text_time"}, "addition_embed_type='text_time'"),
        ({"act_fn": "gelu"}, "'act_fn' = 'gelu'"),
        ({"attention_head_dim": [4, 8]}, "'attention_head_dim' = \\[4, 8\\]: per-block"),
    ],
)
def test_from_dict_rejects_unsupported(override, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig.from_dict({**unet_config_dict("22"), **override})


def test_from_dict_missing_key_uses_diffusers_default():
    d = unet_config_dict("22")
    del d["resnet_time_scale_shift"]  # diffusers default "default" is not what Kandinsky uses
    with pytest.raises(ValueError, match="resnet_time_scale_shift"):
        UNetConfig.from_dict(d)


# ---------------------------------------------------------------------------------------------------
# Input validation (meta device: no compute)


@pytest.fixture(scope="module")
def meta_unets():
    with torch.device("meta"):
        return {name: KandinskyUNet(getattr(unet_configs, name)) for name in ("K22_DECODER", "K22_CONTROLNET_DEPTH",
                                                                               "K21_DECODER", "K22_INPAINT")}


def _meta(*shape):
    return torch.zeros(*shape, device="meta")


@pytest.mark.parametrize(
    "name, args, kwargs, match",
    [
        ("K22_DECODER", (_meta(1, 4, 8, 8), 1, _meta(1, 768)), {},
         r"\(1, 768\) given, expected \(B, 1280\): a Kandinsky 2.1 prior was wired into a 2.2 decoder"),
        ("K21_DECODER", (_meta(1, 4, 8, 8), 1, _meta(1, 1280)), {},
         "a Kandinsky 2.2 prior was wired into a 2.1 decoder"),
        ("K21_DECODER", (_meta(1, 4, 8, 8), 1, _meta(1, 768)), {}, "needs text_embeds"),
        ("K22_CONTROLNET_DEPTH", (_meta(1, 4, 8, 8), 1, _meta(1, 1280)), {}, "depth hint .* is required"),
        ("K22_CONTROLNET_DEPTH", (_meta(1, 4, 8, 8), 1, _meta(1, 1280)), {"hint": _meta(1, 3, 8, 8)},
         r"expected \(1, 3, 64, 64\)"),
        ("K22_DECODER", (_meta(1, 4, 8, 8), 1, _meta(1, 1280)), {"hint": _meta(1, 3, 64, 64)},
         "not a depth ControlNet"),
        ("K22_INPAINT", (_meta(1, 4, 8, 8), 1, _meta(1, 1280)), {}, "4 channels, expected 9"),
        ("K22_DECODER", (_meta(1, 4, 12, 8), 1, _meta(1, 1280)), {}, "multiple of 8"),
        ("K22_DECODER", (_meta(2, 4, 8, 8), 1, _meta(1, 1280)), {}, "batch 1 does not match sample batch 2"),
    ],
)
def test_conditioning_errors(meta_unets, name, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        meta_unets[name](*args, **kwargs)
