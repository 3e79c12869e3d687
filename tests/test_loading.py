"""Loading layer: repo folders, weight-file discovery and safe reading, strict shape-checked loading."""
import json
import logging
import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from kandinsky_core.loading import (
    CheckpointMismatchError,
    KANDINSKY_PIPELINES,
    MissingFileError,
    component_dir,
    empty_weights,
    find_weight_files,
    list_repo_folders,
    load_strict,
    locate_weights,
    materialize,
    meta_tensors,
    read_component_config,
    read_component_weights,
    read_json,
    read_model_index,
    read_state_dict,
    state_dict_shapes,
)

DECODER_INDEX = {
    "_class_name": "KandinskyV22Pipeline",
    "_diffusers_version": "0.18.0.dev0",
    "movq": ["diffusers", "VQModel"],
    "scheduler": ["diffusers", "DDPMScheduler"],
    "unet": ["diffusers", "UNet2DConditionModel"],
}
PRIOR_INDEX = {
    "_class_name": "KandinskyV22PriorPipeline",
    "prior": ["diffusers", "PriorTransformer"],
    "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
    "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
}


def write_json(path, data):
    os.makedirs(path.parent, exist_ok=True)
    path.write_text(json.dumps(data))


def make_repo(root, index, subfolders=()):
    write_json(root / "model_index.json", index)
    for name in subfolders:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


class Tiny(nn.Module):
    """A small module with a persistent and a non-persistent buffer."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.register_buffer("steps", torch.arange(3), persistent=True)
        # arange, not linspace: a library that wraps torch.linspace while torch first caches its device
        # constructors makes linspace ignore `with torch.device("meta")` for the rest of the process
        self.register_buffer("freqs", torch.arange(width, dtype=torch.float32) / width, persistent=False)

    def forward(self, x):
        return self.norm(self.proj(x)) * self.freqs


class Payload:
    """A non-tensor object that weights_only loading must refuse."""


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


# ---------------------------------------------------------------------------------------------- repo


def test_read_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="File not found"):
        read_json(tmp_path / "absent.json")
    with pytest.raises(ValueError):  # MissingFileError is also a ValueError
        read_json(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_json(bad)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_json(lst)


def test_read_model_index(tmp_path):
    repo = make_repo(tmp_path / "prior", PRIOR_INDEX)
    index = read_model_index(repo)
    assert index.class_name == "KandinskyV22PriorPipeline"
    assert (index.version, index.role) == ("2.2", "prior")
    assert index.example_repo == "kandinsky-community/kandinsky-2-2-prior"
    assert index.diffusers_version is None
    # flags and null (absent) components are not components
    assert index.components == {
        "prior": ("diffusers", "PriorTransformer"),
        "text_encoder": ("transformers", "CLIPTextModelWithProjection"),
        "image_encoder": ("transformers", "CLIPVisionModelWithProjection"),
    }
    assert KANDINSKY_PIPELINES["KandinskyV22InpaintPipeline"] == ("2.2", "decoder")
    assert KANDINSKY_PIPELINES["Kandinsky3Pipeline"] == ("3", "decoder")


def test_no_model_index(tmp_path):
    with pytest.raises(ValueError, match="not a diffusers-format Kandinsky repo folder") as e:
        read_model_index(tmp_path)
    assert "hf download kandinsky-community/kandinsky-2-2-decoder --local-dir" in str(e.value)
    # a component folder selected by mistake: point at its parent
    repo = make_repo(tmp_path / "dec", DECODER_INDEX, ["unet"])
    write_json(repo / "unet" / "config.json", {"_class_name": "UNet2DConditionModel"})
    with pytest.raises(ValueError, match="single component folder; select its parent folder"):
        read_model_index(repo / "unet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_model_index(tmp_path / "nowhere")


def test_not_kandinsky(tmp_path):
    make_repo(tmp_path, {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    with pytest.raises(ValueError, match="'StableDiffusionPipeline' pipeline.*not a supported Kandinsky pipeline"):
        read_model_index(tmp_path)


def test_component_dir(tmp_path):
    repo = make_repo(tmp_path / "dec", DECODER_INDEX, ["unet", "scheduler"])
    assert component_dir(repo, "unet") == repo / "unet"
    with pytest.raises(FileNotFoundError) as e:
        component_dir(repo, "movq")
    msg = str(e.value)
    assert "has no 'movq' subfolder" in msg and "kandinsky-community/kandinsky-2-2-decoder" in msg
    assert "movq, scheduler, unet" in msg
    with pytest.raises(ValueError, match="KandinskyV22Pipeline folder.*has no 'prior' component"):
        component_dir(repo, "prior")
    with pytest.raises(ValueError, match="Invalid component name"):
        component_dir(repo, "../dec")
    with pytest.raises(FileNotFoundError, match="has no 'unet' subfolder"):
        component_dir(tmp_path, "unet")  # no model_index.json at all
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        read_component_config(repo / "unet")


def test_list_repo_folders(tmp_path):
    make_repo(tmp_path / "kandinsky-2-2-decoder", DECODER_INDEX)
    make_repo(tmp_path / "kandinsky-2-2-prior", PRIOR_INDEX)
    make_repo(tmp_path / "community" / "kandinsky-3", {"_class_name": "Kandinsky3Pipeline"})
    make_repo(tmp_path / "combined", {"_class_name": "KandinskyV22CombinedPipeline"})
    make_repo(tmp_path / "sd15", {"_class_name": "StableDiffusionPipeline"})
    make_repo(tmp_path / ".cache" / "hidden", DECODER_INDEX)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{")
    assert list_repo_folders(tmp_path) == [
        "combined",
        "community/kandinsky-3",
        "kandinsky-2-2-decoder",
        "kandinsky-2-2-prior",
    ]
    assert list_repo_folders(tmp_path, roles=("prior",)) == ["kandinsky-2-2-prior"]
    assert list_repo_folders(tmp_path / "absent") == []


# ------------------------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def vq_folders(tmp_path_factory):
    """A tiny diffusers VQModel (spec §5.1 MoVQ dummy) saved in every diffusers layout."""
    from diffusers import VQModel

    torch.manual_seed(0)
    model = VQModel(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        vq_embed_dim=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
    )
    root = tmp_path_factory.mktemp("vq")
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    model.save_pretrained(root / "plain")
    model.save_pretrained(root / "sharded", max_shard_size="200KB")
    model.save_pretrained(root / "bin", safe_serialization=False)
    model.save_pretrained(root / "both")
    model.half().save_pretrained(root / "both", variant="fp16")
    model.save_pretrained(root / "fp16_only", variant="fp16")
    model.save_pretrained(root / "fp16_sharded", variant="fp16", max_shard_size="200KB")
    return root, ref


def assert_same_state(got, ref, dtype=torch.float32):
    assert sorted(got) == sorted(ref)
    for k, v in ref.items():
        assert got[k].dtype == dtype, k
        assert torch.equal(got[k].float(), v.to(dtype).float()), k


def test_diffusers_layouts_found_and_read(vq_folders):
    root, ref = vq_folders
    assert [p.name for p in find_weight_files(root / "plain")] == ["diffusion_pytorch_model.safetensors"]
    assert [p.name for p in find_weight_files(root / "bin")] == ["diffusion_pytorch_model.bin"]
    for name in ("plain", "bin", "sharded"):
        assert_same_state(read_component_weights(root / name), ref)
    assert len(ref) == 219


def test_sharded_safetensors(vq_folders):
    root, ref = vq_folders
    index, files = locate_weights(root / "sharded")
    assert index.name == "diffusion_pytorch_model.safetensors.index.json"
    assert len(files) > 1 and all("-of-" in p.name for p in files)
    assert_same_state(read_state_dict(files), ref)  # shards passed directly
    assert_same_state(read_state_dict([index]), ref)  # or through the index


def test_fp16_variant_selection(vq_folders, caplog):
    root, ref = vq_folders
    assert [p.name for p in find_weight_files(root / "both")] == ["diffusion_pytorch_model.safetensors"]
    assert [p.name for p in find_weight_files(root / "both", "fp16")] == ["diffusion_pytorch_model.fp16.safetensors"]
    assert_same_state(read_component_weights(root / "both", "fp16"), ref, torch.float16)
    index, files = locate_weights(root / "fp16_sharded", "fp16")
    assert index.name == "diffusion_pytorch_model.safetensors.index.fp16.json"
    assert all(p.name.startswith("diffusion_pytorch_model.fp16-") for p in files)
    assert_same_state(read_component_weights(root / "fp16_sharded", "fp16"), ref, torch.float16)
    with caplog.at_level(logging.INFO, logger="kandinsky_core.loading.weights"):
        # fp16 asked but absent -> the full-precision files, with a note
        assert [p.name for p in find_weight_files(root / "plain", "fp16")] == ["diffusion_pytorch_model.safetensors"]
        assert "No fp16 weights" in caplog.text
        # nothing asked, only fp16 present -> the fp16 files, with a note
        assert [p.name for p in find_weight_files(root / "fp16_only")] == ["diffusion_pytorch_model.fp16.safetensors"]
        assert "Only fp16 weights" in caplog.text


def test_transformers_names(tmp_path):
    sd = {"a.weight": torch.randn(3, 2), "b.bias": torch.randn(3)}
    (tmp_path / "st").mkdir()
    save_file(sd, tmp_path / "st" / "model.safetensors")
    save_file({k: v.half() for k, v in sd.items()}, tmp_path / "st" / "model.fp16.safetensors")
    assert [p.name for p in find_weight_files(tmp_path / "st")] == ["model.safetensors"]
    assert [p.name for p in find_weight_files(tmp_path / "st", "fp16")] == ["model.fp16.safetensors"]
    (tmp_path / "pt").mkdir()
    torch.save(sd, tmp_path / "pt" / "pytorch_model.bin")
    assert [p.name for p in find_weight_files(tmp_path / "pt")] == ["pytorch_model.bin"]
    got = read_component_weights(tmp_path / "pt")
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    # sharded transformers layout: model-0000k-of-0000n.safetensors + model.safetensors.index.json
    (tmp_path / "sh").mkdir()
    save_file({"a.weight": sd["a.weight"]}, tmp_path / "sh" / "model-00001-of-00002.safetensors")
    save_file({"b.bias": sd["b.bias"]}, tmp_path / "sh" / "model-00002-of-00002.safetensors")
    weight_map = {"a.weight": "model-00001-of-00002.safetensors", "b.bias": "model-00002-of-00002.safetensors"}
    write_json(tmp_path / "sh" / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    got = read_component_weights(tmp_path / "sh")
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    # safetensors preferred over .bin in the same folder
    torch.save(sd, tmp_path / "st" / "pytorch_model.bin")
    assert [p.name for p in find_weight_files(tmp_path / "st")] == ["model.safetensors"]


def test_missing_weight_files(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        find_weight_files(tmp_path / "unet")
    msg = str(e.value)
    assert str(tmp_path / "unet") in msg
    assert "diffusion_pytorch_model.safetensors" in msg and "model.safetensors" in msg
    assert "pytorch_model.bin" in msg and "diffusion_pytorch_model.fp16.safetensors" in msg
    save_file({"x": torch.zeros(1)}, tmp_path / "unet" / "my_finetune.safetensors")
    with pytest.raises(ValueError, match="Weight-like files present: my_finetune.safetensors"):
        find_weight_files(tmp_path / "unet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_weight_files(tmp_path / "movq")


def test_broken_shards(tmp_path, vq_folders):
    root, _ = vq_folders
    import shutil

    folder = tmp_path / "sharded"
    shutil.copytree(root / "sharded", folder)
    index_path = folder / "diffusion_pytorch_model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    # a key listed in the index but absent from the shards
    index["weight_map"]["quantize.extra"] = index["weight_map"]["quant_conv.weight"]
    write_json(index_path, index)
    with pytest.raises(ValueError, match="1 tensors listed in .* are absent from its shards.*quantize.extra"):
        read_component_weights(folder)
    # a shard file missing
    shard = sorted(folder.glob("diffusion_pytorch_model-*-of-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"weight shards listed in .* are missing.*{shard.name}"):
        find_weight_files(folder)
    # no index at all
    index_path.unlink()
    with pytest.raises(ValueError, match="index.json is missing"):
        find_weight_files(folder)
    # shard names may not escape the folder
    write_json(index_path, {"weight_map": {"a": "../plain/diffusion_pytorch_model.safetensors"}})
    with pytest.raises(ValueError, match="invalid shard file"):
        find_weight_files(folder)


def test_duplicate_keys_across_files(tmp_path):
    save_file({"a": torch.zeros(1)}, tmp_path / "one.safetensors")
    save_file({"a": torch.ones(1)}, tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match="'a' appears in both"):
        read_state_dict([tmp_path / "one.safetensors", tmp_path / "two.safetensors"])


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or incompletely downloaded") as e:
        read_component_weights(tmp_path)
    assert str(path) in str(e.value) and "re-download" in str(e.value)
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(ValueError, match="Git LFS pointer"):
        read_state_dict([path])


def test_pickle_safety(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    obj = tmp_path / "obj.bin"
    torch.save({"w": torch.zeros(2), "meta": Payload()}, obj)
    with pytest.raises(ValueError, match="non-tensor Python objects and was refused for safety") as e:
        read_state_dict([obj])
    assert str(obj) in str(e.value) and "Payload" in str(e.value)
    evil = tmp_path / "evil.ckpt"
    torch.save({"w": Exploit()}, evil)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="refused for safety"):
        read_state_dict([evil])
    assert not (tmp_path / "pwned_by_pickle").exists()
    lst = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], lst)
    with pytest.raises(ValueError, match="list.pt holds a list, not a state dict"):
        read_state_dict([lst])
    nested = tmp_path / "nested.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, nested)
    with pytest.raises(ValueError, match="nested.ckpt is not a flat state dict: entry 'state_dict' holds a dict"):
        read_state_dict([nested])
    plain = tmp_path / "plain.bin"
    torch.save({"w": torch.arange(4.0), "b": torch.ones(2)}, plain)
    got = read_state_dict([plain])
    assert torch.equal(got["w"], torch.arange(4.0)) and torch.equal(got["b"], torch.ones(2))
    data = plain.read_bytes()
    plain.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or incompletely downloaded"):
        read_state_dict([plain])
    assert calls and all(c is True for c in calls)


# -------------------------------------------------------------------------------------------- strict


def test_shape_mismatch_message():
    module = Tiny(4)
    sd = Tiny(4).state_dict()
    sd["proj.weight"] = torch.zeros(4, 9)
    with pytest.raises(CheckpointMismatchError) as e:
        load_strict(module, sd, "unet", "2.2 inpaint")
    msg = str(e.value)
    assert "'unet'" in msg and "'2.2 inpaint'" in msg
    assert "1 shape mismatches: proj.weight: checkpoint (4, 9) vs expected (4, 4)" in msg
    assert "right model folder" in msg and "re-download" in msg
    assert "missing" not in msg.split("Hint")[0]


def test_missing_and_unexpected_message():
    module = Tiny(4)
    sd = Tiny(4).state_dict()
    del sd["norm.bias"]
    for i in range(7):
        sd[f"extra.{i}.weight"] = torch.zeros(1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(ValueError) as e:
        load_strict(module, sd, "movq", "kandinsky-2.2")
    msg = str(e.value)
    assert "'movq'" in msg and "'kandinsky-2.2'" in msg
    assert "model expects 5 tensors, checkpoint has 11" in msg
    assert "1 missing keys (expected, absent from the checkpoint): norm.bias" in msg
    assert "7 unexpected keys" in msg and "extra.0.weight" in msg and "extra.4.weight" in msg
    assert "extra.5.weight" not in msg and "... and 2 more" in msg
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_copy_load_and_cast():
    torch.manual_seed(0)
    src = Tiny(4)
    dst = Tiny(4)
    load_strict(dst, src.state_dict(), "tiny", "test", dtype=torch.bfloat16)
    assert dst.proj.weight.dtype == torch.bfloat16 and dst.steps.dtype == torch.int64
    assert torch.equal(dst.proj.weight, src.proj.weight.bfloat16())


def test_meta_load_materializes():
    torch.manual_seed(0)
    src = Tiny(4)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    with empty_weights():
        module = Tiny(4)
    assert module.proj.weight.is_meta and not module.freqs.is_meta
    assert nn.Module.register_parameter.__name__ == "register_parameter"  # patch undone
    load_strict(module, sd, "tiny", "test")
    assert meta_tensors(module) == []
    assert module.proj.weight.data_ptr() == sd["proj.weight"].data_ptr()  # assigned, not copied
    assert isinstance(module.proj.weight, nn.Parameter) and module.proj.weight.requires_grad
    x = torch.randn(2, 4)
    assert torch.equal(module(x), src(x))
    # fp16 checkpoint into an fp32-built module keeps the module's dtype unless one is asked for
    with empty_weights():
        half = Tiny(4)
    load_strict(half, {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, "tiny", "fp16")
    assert half.proj.weight.dtype == torch.float32
    with empty_weights():
        cast = Tiny(4)
    load_strict(cast, sd, "tiny", "test", dtype=torch.float16)
    assert cast.proj.weight.dtype == torch.float16 and cast.freqs.dtype == torch.float16
    assert cast.steps.dtype == torch.int64


def test_meta_device_leftover_is_reported():
    with torch.device("meta"):
        module = Tiny(4)  # the non-persistent buffer is lost on meta
    with pytest.raises(RuntimeError, match="1 tensors of 'tiny' are still on the meta device.*freqs"):
        load_strict(module, Tiny(4).state_dict(), "tiny", "test")
    with pytest.raises(RuntimeError, match="empty_weights"):
        materialize(module, component="tiny")


def test_diffusers_vqmodel_loads_strictly_on_meta(vq_folders):
    """The real diffusers layout end to end: built on meta, loaded strictly, same outputs as from_pretrained."""
    from diffusers import VQModel

    root, ref = vq_folders
    folder = root / "sharded"
    expected = VQModel.from_pretrained(folder).eval()
    with empty_weights():
        model = VQModel.from_config(read_component_config(folder))
    sd = read_component_weights(folder)
    assert state_dict_shapes(sd)["quantize.embedding.weight"] == (12, 4)
    load_strict(model, sd, "movq", "tiny")
    model.eval()
    assert meta_tensors(model) == []
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(x).sample - expected(x).sample).abs().max().item()
    assert diff == 0.0
    # the same folder given to the wrong module: a mismatch naming the component and variant
    with empty_weights():
        wrong = VQModel.from_config({**read_component_config(folder), "num_vq_embeddings": 16})
    with pytest.raises(ValueError, match=r"quantize.embedding.weight: checkpoint \(12, 4\) vs expected \(16, 4\)"):
        load_strict(wrong, sd, "movq", "kandinsky-3")


def test_transformers_module_on_meta(tmp_path):
    """A transformers encoder built under empty_weights keeps its non-persistent position_ids."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=100,
        bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    torch.manual_seed(0)
    CLIPTextModel(cfg).save_pretrained(tmp_path)
    expected = CLIPTextModel.from_pretrained(tmp_path).eval()
    with empty_weights():
        model = CLIPTextModel(cfg)
    load_strict(model, read_component_weights(tmp_path), "text_encoder", "tiny")
    model.eval()
    assert meta_tensors(model) == []
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(ids).last_hidden_state, expected(ids).last_hidden_state)
