"""transformers-backed weights (CLIP text and vision towers, M-CLIP, the Kandinsky 3 T5 encoder) load
strictly through the core's weight reader (issue 10 item 3): key/shape mismatches name component and key,
bad files and configs get the same messages as the UNet's, tokenizer folders are checked."""
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from kandinsky_core.loading.strict import CheckpointMismatchError
from kandinsky_core.models import clip, mclip, t5

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 4096\n"


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def _build_t5(path):
    from tiny_models.k3 import TINY_T5
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    T5EncoderModel(T5Config(**TINY_T5)).save_pretrained(str(path))


def _build_clip_text(path):
    from tiny_models.prior import build_reference_clip_text
    build_reference_clip_text(str(path))


def _build_clip_vision(path):
    from tiny_models.prior import build_reference_clip_vision
    build_reference_clip_vision(str(path))


def _build_mclip(path):
    from tiny_models.mclip import build_reference_mclip
    build_reference_mclip(path)


# name -> (builder, loader, component named in errors, a config size key)
MODELS = {
    "clip_text": (_build_clip_text, lambda f: clip.load_clip_text_encoder(f, torch.float32, "cpu"), "text_encoder",
                  "hidden_size"),
    "clip_vision": (_build_clip_vision, lambda f: clip.load_clip_image_encoder(f, torch.float32, "cpu"),
                    "image_encoder", "num_hidden_layers"),
    "mclip": (_build_mclip, lambda f: mclip.load_mclip(str(f)), "text_encoder", "num_hidden_layers"),
    "t5": (_build_t5, lambda f: t5.load_t5_encoder(f), "text_encoder", "d_model"),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request, tmp_path_factory):
    name = request.param
    build, load, component, size_key = MODELS[name]
    folder = tmp_path_factory.mktemp(name) / "good"
    build(folder)
    return name, folder, load, component, size_key


def _copy(folder, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    return bad


def _edit(bad, change):
    state = load_file(str(bad / "model.safetensors"))
    change(state)
    save_file(state, str(bad / "model.safetensors"))


def _weight_key(state):
    return next(k for k in sorted(state) if state[k].ndim == 2 and not k.endswith("embed_tokens.weight"))


@pytest.mark.parametrize("mismatch", ["missing", "unexpected", "mis-shaped"])
def test_key_mismatch_is_an_error_naming_component_and_key(model, tmp_path, mismatch):
    _, folder, load, component, _ = model
    bad = _copy(folder, tmp_path)
    key = _weight_key(load_file(str(folder / "model.safetensors")))

    def change(state):
        if mismatch == "missing":
            del state[key]
        elif mismatch == "unexpected":
            state["extra_layer.weight"] = torch.zeros(2, 2)
        else:
            state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])

    _edit(bad, change)
    named = "extra_layer.weight" if mismatch == "unexpected" else key
    with pytest.raises(CheckpointMismatchError, match=f"'{component}'") as err:
        load(bad)
    assert named in str(err.value)
    assert isinstance(load(folder), torch.nn.Module)  # the next load works


@pytest.mark.parametrize("damage", ["lfs", "truncated", "pickle"])
def test_bad_weight_files_get_clear_messages(model, tmp_path, damage):
    _, folder, load, _, _ = model
    bad = _copy(folder, tmp_path)
    target = bad / "model.safetensors"
    if damage == "lfs":
        target.write_text(LFS_POINTER)
        expected = "Git LFS pointer"
    elif damage == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        expected = "corrupt or incompletely downloaded"
    else:
        target.unlink()
        torch.save({"weight": torch.zeros(1), "payload": _Evil()}, bad / "pytorch_model.bin")
        expected = "refused for safety"
    with pytest.raises(ValueError, match=expected) as err:
        load(bad)
    assert "weights_only=False" not in str(err.value)


def test_absurd_config_sizes_are_refused_before_building(model, tmp_path):
    import json

    _, folder, load, _, size_key = model
    bad = _copy(folder, tmp_path)
    config = json.loads((bad / "config.json").read_text())
    for value in (10**9, 0, "32"):
        (bad / "config.json").write_text(json.dumps({**config, size_key: value}))
        with pytest.raises(ValueError, match=size_key):
            load(bad)


@pytest.mark.parametrize("loader", [clip.load_clip_tokenizer, mclip.load_xlmr_tokenizer, t5.load_t5_tokenizer],
                         ids=["clip", "xlmr", "t5"])
def test_emptied_tokenizer_folder(tmp_path, loader):
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ValueError, match="tokenizer"):
        loader(str(tmp_path / "tokenizer"))
    with pytest.raises(ValueError, match="tokenizer"):
        loader(str(tmp_path / "absent"))
