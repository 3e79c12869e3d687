"""Loading original Kandinsky 3 release files safely (acceptance 3): no code runs, clear errors, no oracle needed."""
from __future__ import annotations

import pickle

import pytest
import torch

from kandinsky_core.loading.original_keys import original_unet_key, projection_state_dict
from kandinsky_core.loading.originals import (is_original_release, list_original_unets, load_original_movq,
                                              load_original_unet)

MARKER = "k31_pickle_payload_ran"


class _Payload:
    """Unpickling this runs code that sets torch.<MARKER>: the side effect a refused pickle must not have."""

    def __reduce__(self):
        return (exec, (f"import torch; torch.{MARKER} = True",))


def _release(tmp_path, unet_payload, projection=None, movq=None):
    weights = tmp_path / "Kandinsky3.1" / "weights"
    weights.mkdir(parents=True)
    torch.save(unet_payload, weights / "kandinsky3.pt")
    if projection is not None:
        torch.save(projection, weights / "projection.pt")
    if movq is not None:
        torch.save(movq, weights / "movq.pt")
    return weights.parent


def test_code_executing_pickle_is_refused_and_runs_nothing(tmp_path):
    folder = _release(tmp_path, {"unet": {"in_layer.weight": torch.zeros(1)}, "null_embedding": _Payload()})
    assert is_original_release(folder)
    with pytest.raises(ValueError, match="refused for safety"):
        load_original_unet(folder, "base")
    assert not hasattr(torch, MARKER)
    pickle.loads(pickle.dumps(_Payload()))  # a plain unpickle does run it: the check above could fail
    assert getattr(torch, MARKER) is True
    delattr(torch, MARKER)


def test_truncated_file_says_redownload(tmp_path):
    folder = _release(tmp_path, {"unet": {"in_layer.weight": torch.zeros(64, 4, 3, 3)}, "null_embedding": torch.zeros(8)},
                      projection={"0.weight": torch.zeros(8, 8)})
    path = folder / "weights" / "kandinsky3.pt"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt or incompletely downloaded"):
        load_original_unet(folder, "base")


def test_wrong_files_in_the_wrong_loader(tmp_path):
    movq_like = {"encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}
    folder = _release(tmp_path, movq_like, movq={"unet": {}, "null_embedding": torch.zeros(4)})
    with pytest.raises(ValueError, match="not an original Kandinsky 3 UNet file"):
        load_original_unet(folder, "base")
    with pytest.raises(ValueError, match="holds a UNet, not the MoVQ"):
        load_original_movq(folder)
    with pytest.raises(FileNotFoundError, match="has no flash UNet"):
        load_original_unet(folder, "flash")


def test_projection_must_be_linear_and_layernorm():
    with pytest.raises(ValueError, match="wrong file for the projection"):
        projection_state_dict({"encoder.conv_in.weight": torch.zeros(1)})
    three_oh = projection_state_dict({"t5.0.weight": torch.zeros(2, 2), "t5.1.weight": torch.zeros(2),
                                      "t5.1.bias": torch.zeros(2)})
    assert sorted(three_oh) == ["encoder_hid_proj.projection_linear.weight", "encoder_hid_proj.projection_norm.bias",
                                "encoder_hid_proj.projection_norm.weight"]


def test_unet_key_mapping_examples():
    assert original_unet_key("to_time_embed.1.weight") == "time_embedding.linear_1.weight"
    assert original_unet_key("out_layer.2.bias") == "conv_out.bias"
    assert (original_unet_key("down_samples.1.resnet_attn_blocks.2.1.attention.to_query.weight")
            == "down_blocks.1.attentions.3.attention.to_q.weight")
    assert (original_unet_key("up_samples.0.self_attention_block.attention.output_layer.weight")
            == "up_blocks.0.attentions.0.attention.to_out.0.weight")
    assert original_unet_key("feature_pooling.attention.to_key.weight") == "add_time_condition.attention.to_k.weight"


def test_diffusers_folder_is_not_an_original_release(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "weights").mkdir()
    torch.save({}, tmp_path / "weights" / "kandinsky3.pt")
    assert not is_original_release(tmp_path) and list_original_unets(tmp_path) == []
