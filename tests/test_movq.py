"""MoVQ parity with diffusers' VQModel (tiny configs, fp32) and full-size preset structure (meta device)."""
import dataclasses

import pytest
import torch
from diffusers import VQModel
from safetensors.torch import load_file

from kandinsky_core.configs.movq import K2_MOVQ, K3_MOVQ, MoVQConfig
from kandinsky_core.models.movq import MoVQ, rename_legacy_attention_keys
from tiny_models.movq import KINDS, build_reference_movq, load_native_movq

TOL = 1e-5
SIZES = [(64, 64), (64, 96)]

# kandinsky-community/kandinsky-2-2-decoder movq/config.json (spec §1.5)
K22_MOVQ_CONFIG_JSON = {
    "_class_name": "VQModel",
    "_diffusers_version": "0.17.0.dev0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 256, 512],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "norm_type": "spatial",
    "num_vq_embeddings": 16384,
    "out_channels": 3,
    "sample_size": 32,
    "scaling_factor": 0.18215,
    "up_block_types": ["AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
    "vq_embed_dim": 4,
}


@pytest.fixture(scope="module", params=KINDS)
def pair(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"movq_{request.param}")
    ref = build_reference_movq(request.param, path)
    return request.param, path, ref, load_native_movq(path)


def _image(h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(h * 1000 + w)
    return torch.rand(2, 3, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize("size", SIZES)
@torch.no_grad()
def test_encode_parity(pair, size):
    kind, _, ref, ours = pair
    x = _image(*size)
    expected = ref.encode(x).latents
    got = ours.encode(x)
    s = ours.scale_factor
    assert got.shape == expected.shape == (2, 4, size[0] // s, size[1] // s)
    assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("size,force_not_quantize", [((64, 64), True), ((64, 96), True), ((64, 96), False)])
@torch.no_grad()
def test_decode_parity(pair, size, force_not_quantize):
    kind, _, ref, ours = pair
    z = ref.encode(_image(*size)).latents
    expected = ref.decode(z, force_not_quantize=force_not_quantize).sample
    got = ours.decode(z, force_not_quantize=force_not_quantize)
    assert got.shape == expected.shape == (2, 3, *size)
    assert (got - expected).abs().max().item() <= TOL
    if not force_not_quantize:  # the quantizing path really took another route
        assert (got - ours.decode(z)).abs().max().item() > 1e-3


@torch.no_grad()
def test_quantize_latents_returns_codebook_entries(pair):
    _, _, _, ours = pair
    z = torch.randn(1, 4, 5, 7, generator=torch.Generator().manual_seed(0))
    q = ours.quantize_latents(z)
    codebook = ours.quantize.embedding.weight
    flat = q.permute(0, 2, 3, 1).reshape(-1, 4)  # B, C, H, W -> BHW, C
    nearest = codebook[torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 4), codebook).argmin(1)]
    assert q.shape == z.shape
    assert (flat - nearest).abs().max().item() <= 1e-6


@torch.no_grad()
def test_without_quantizer_loads_strictly_and_decodes(pair):
    kind, path, ref, ours = pair
    state = load_file(str(path / "diffusion_pytorch_model.safetensors"))
    del state["quantize.embedding.weight"]
    model = MoVQ(dataclasses.replace(ours.config, has_quantizer=False)).eval()
    model.load_state_dict(state, strict=True)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert (model.decode(z) - ref.decode(z, force_not_quantize=True).sample).abs().max().item() <= TOL
    with pytest.raises(RuntimeError, match="without a quantizer"):
        model.decode(z, force_not_quantize=False)


def test_legacy_attention_keys_are_renamed(pair):
    _, path, _, ours = pair
    state = load_file(str(path / "diffusion_pytorch_model.safetensors"))
    legacy = {}
    old_names = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    for key, value in state.items():
        for new, old in old_names.items():
            key = key.replace(new, old)
        legacy[key] = value
    assert any(".proj_attn." in k for k in legacy)
    renamed = rename_legacy_attention_keys(legacy)
    assert set(renamed) == set(state)
    MoVQ(ours.config).load_state_dict(renamed, strict=True)


@pytest.mark.parametrize("preset,params", [(K2_MOVQ, 67_832_495), (K3_MOVQ, 270_669_103)])
def test_full_size_presets_on_meta(preset, params):
    with torch.device("meta"):
        ours = MoVQ(preset)
        ref = VQModel(**preset.to_diffusers_dict())
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == params
    assert sum(p.numel() for p in ref.parameters()) == params
    assert ours_shapes == ref_shapes
    assert len(ours_shapes) == 431
    assert ours.scale_factor == 8


def test_from_dict_reads_the_k22_config():
    config = MoVQConfig.from_dict(K22_MOVQ_CONFIG_JSON)
    assert config == K2_MOVQ
    assert config.scale_factor == 8
    assert MoVQConfig.from_dict({**K22_MOVQ_CONFIG_JSON, "block_out_channels": [256, 512, 512, 1024]}) == K3_MOVQ
    assert not MoVQConfig.from_dict(K22_MOVQ_CONFIG_JSON, has_quantizer=False).has_quantizer


def test_from_dict_rejects_unsupported_values():
    with pytest.raises(ValueError, match="'norm_type' = 'group'"):
        MoVQConfig.from_dict({**K22_MOVQ_CONFIG_JSON, "norm_type": "group"})
    with pytest.raises(ValueError, match="'norm_type'"):  # the diffusers default when the key is absent
        MoVQConfig.from_dict({k: v for k, v in K22_MOVQ_CONFIG_JSON.items() if k != "norm_type"})
    with pytest.raises(ValueError, match="UpBlock2D"):
        MoVQConfig.from_dict({**K22_MOVQ_CONFIG_JSON, "up_block_types": ["UpBlock2D"] * 4})
    with pytest.raises(ValueError, match="lookup_from_codebook"):
        MoVQConfig.from_dict({**K22_MOVQ_CONFIG_JSON, "lookup_from_codebook": True})
