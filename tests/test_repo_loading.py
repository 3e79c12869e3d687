"""Whole-repo loading: legacy MoVQ attention names, role checks, corrupt files (errors name the file)."""
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from kandinsky_core.loading.components import load_decoder, load_movq, load_prior
from tiny_models.repos import build_decoder_repo


@pytest.fixture(scope="module")
def decoder_repo(tmp_path_factory):
    return build_decoder_repo(tmp_path_factory.mktemp("dec"), "decoder22")


def test_movq_with_legacy_attention_names_loads_identically(decoder_repo, tmp_path):
    repo = shutil.copytree(decoder_repo, tmp_path / "legacy")
    weights = repo / "movq" / "diffusion_pytorch_model.safetensors"
    renamed = {}
    for key, value in load_file(weights).items():
        for new, old in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")):
            key = key.replace(new, old) if ".attentions." in key else key
        renamed[key] = value
    assert any(".query." in k for k in renamed)
    save_file(renamed, weights)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = load_movq(decoder_repo).movq.decode(z)
    assert torch.equal(load_movq(repo).movq.decode(z), expected)


def test_decoder_folder_in_prior_loader_is_refused(decoder_repo):
    with pytest.raises(ValueError, match="not a prior"):
        load_prior(decoder_repo)


def test_truncated_unet_weights_name_the_file(decoder_repo, tmp_path):
    repo = shutil.copytree(decoder_repo, tmp_path / "broken")
    weights = repo / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        load_decoder(repo)


def test_swapped_unet_config_is_a_clear_error(decoder_repo, tmp_path):
    repo = shutil.copytree(decoder_repo, tmp_path / "swapped")
    config = (repo / "unet" / "config.json").read_text().replace('"in_channels": 4', '"in_channels": 9')
    (repo / "unet" / "config.json").write_text(config)
    with pytest.raises(ValueError, match="conv_in"):
        load_decoder(repo)
