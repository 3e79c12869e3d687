"""Bad files, inputs and stale state a user can cause (issue 10, items 1, 2, 4, 5, 6, 7, 8).

Each test reproduces one defect found by the hardening pass; see the issue for the original reports.
"""
import importlib
import json
import logging
import shutil

import pytest
import torch
from tiny_models.node_repos import (DECODER, INPAINT, PRIOR, block_mask, call, core, gen, models, nodes,  # noqa: F401
                                    rand_image, tiny_model_dir)


def fixed_embeds(core, width=32, batch=1):
    return core.payloads.Embeds(torch.rand(batch, width, generator=gen(1)), torch.rand(batch, width, generator=gen(2)),
                                "2.2")


def listed(nodes):
    return (nodes["KandinskyPriorLoader"].INPUT_TYPES()["required"]["prior_name"][0],
            nodes["KandinskyDecoderLoader"].INPUT_TYPES()["required"]["decoder_name"][0])


# --- item 1: odd folders never break the loaders' lists ------------------------------------------

FOREIGN_INDEXES = {
    "class-list": {"_class_name": ["KandinskyV22Pipeline"]},
    "class-dict": {"_class_name": {"name": "KandinskyV22PriorPipeline"}},
    "class-number": {"_class_name": 7},
    "not-an-object": ["KandinskyV22Pipeline"],
}


@pytest.fixture
def odd_model_dir(tmp_path, monkeypatch):
    """The tiny repos plus folders whose model_index.json is foreign, invalid or unreadable."""
    for name in (PRIOR, DECODER):
        (tmp_path / name).symlink_to(tiny_model_dir() / name, target_is_directory=True)
    for name, data in FOREIGN_INDEXES.items():
        (tmp_path / "odd" / name).mkdir(parents=True)
        (tmp_path / "odd" / name / "model_index.json").write_text(json.dumps(data))
    (tmp_path / "odd" / "invalid-json").mkdir()
    (tmp_path / "odd" / "invalid-json" / "model_index.json").write_text("{not json")
    (tmp_path / "odd" / "binary").mkdir()
    (tmp_path / "odd" / "binary" / "model_index.json").write_bytes(b"\xff\xfe\x00garbage")
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", str(tmp_path))
    return tmp_path


def test_foreign_model_index_is_skipped_and_logged_once(nodes, odd_model_dir, caplog):
    with caplog.at_level(logging.WARNING):
        assert listed(nodes) == ([PRIOR], [DECODER])
        first = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()]
        caplog.clear()
        assert listed(nodes) == ([PRIOR], [DECODER])  # ComfyUI calls INPUT_TYPES again and again
        again = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()]
    skipped = {name for name in [*FOREIGN_INDEXES, "invalid-json", "binary"] if any(name in m for m in first)}
    assert skipped == {*FOREIGN_INDEXES, "invalid-json", "binary"}
    assert len(first) == len(skipped), first  # one line per folder
    assert again == []


def test_unreadable_model_index_is_skipped(nodes, odd_model_dir, monkeypatch, caplog):
    """An index that cannot even be stat'ed (a folder without permission) is skipped, not raised."""
    from pathlib import Path

    (odd_model_dir / "locked").mkdir()
    (odd_model_dir / "locked" / "model_index.json").write_text("{}")
    original = Path.is_file

    def is_file(self):
        if self.parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    with caplog.at_level(logging.WARNING):
        assert listed(nodes) == ([PRIOR], [DECODER])
    assert any("locked" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", sorted(FOREIGN_INDEXES))
def test_loading_a_foreign_folder_by_name_is_a_clear_error(nodes, odd_model_dir, name):
    with pytest.raises(ValueError, match="not a supported Kandinsky pipeline|should hold a JSON object") as info:
        call(nodes["KandinskyDecoderLoader"], decoder_name=f"odd/{name}", dtype="fp32")
    assert "model_index.json" in str(info.value)


# --- item 2: inpainting a batch re-blends each sample with its own image ------------------------

def test_inpaint_batch_keeps_each_samples_own_image(nodes, models, core):
    unet, movq = models["inpaint"]
    images = torch.cat([rand_image(32, 32, 21), rand_image(32, 32, 22)])
    masks = torch.cat([block_mask(32, 32), 1 - block_mask(32, 32)])  # different masks per sample
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=images, mask=masks)[0]
    out = call(nodes["KandinskyUNetSampler"], unet=unet, embeds=fixed_embeds(core, batch=2), latent=latent, seed=3,
               steps=3, guidance_scale=4.0, sampler="ddpm", denoise=1.0)[0]["samples"]
    keep = core.decoder.latent_keep_mask(latent["noise_mask"], tuple(out.shape[-2:]))
    for i in range(2):
        kept = keep[i].bool().expand_as(out[i])
        assert kept.any()
        assert torch.equal(out[i][kept], latent["samples"][i][kept]), f"sample {i} lost its own image"


# --- item 4: a stale Cancel never reaches a later run -------------------------------------------

def test_cancel_while_idle_does_not_abort_the_next_run(nodes, models):
    node_runtime = importlib.import_module("kandinsky_pack.nodes.runtime")
    node_runtime.interrupt()  # the user pressed Cancel while nothing ran
    embeds = call(nodes["KandinskyPriorEncode"], prior=models["prior"], prompt="a cat", negative_prompt="", seed=1,
                  steps=2, guidance_scale=4.0, batch_size=1)[0]
    assert embeds.batch == 1


# --- items 7 and 8: seeds and steps limits -------------------------------------------------------

def _prior_call(nodes, models, **kw):
    base = dict(prior=models["prior"], prompt="a cat", negative_prompt="", seed=1, steps=2, guidance_scale=4.0,
                batch_size=1)
    return call(nodes["KandinskyPriorEncode"], **{**base, **kw})


@pytest.mark.parametrize("seed", [2**64, 2**70, -1])
def test_seed_out_of_range_names_seed_and_range(nodes, models, seed):
    with pytest.raises(ValueError, match=rf"seed must be an integer from 0 to {2**64 - 1}, got {seed}"):
        _prior_call(nodes, models, seed=seed)


def test_largest_seed_works(nodes, models):
    assert _prior_call(nodes, models, seed=2**64 - 1)[0].batch == 1


def test_steps_widget_max_runs(nodes, models, core):
    """The steps widget's max is a value the sampler accepts (steps_offset 1 reaches t = 1000 at 1000 steps)."""
    spec = nodes["KandinskyUNetSampler"].INPUT_TYPES()["required"]["steps"][1]
    top = spec["max"]
    unet = models["decoder"][0]
    for sampler in ("ddpm", "ddim"):  # denoise small enough to run only a few of the `top` steps
        out = call(nodes["KandinskyUNetSampler"], unet=unet, embeds=fixed_embeds(core), latent={
            "samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=top, guidance_scale=1.0, sampler=sampler,
            denoise=2 / top)[0]
        assert out["samples"].shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match=f"steps must be an integer from 1 to {top}"):
        call(nodes["KandinskyUNetSampler"], unet=unet, embeds=fixed_embeds(core), latent={
            "samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=top + 1, guidance_scale=1.0, sampler="ddpm",
            denoise=1.0)
    for node_id in ("KandinskyPriorEncode", "KandinskyPriorEmb2Emb"):
        assert nodes[node_id].INPUT_TYPES()["required"]["steps"][1]["max"] == top
    schedulers = importlib.import_module("kandinsky_pack.kandinsky_core.schedulers")
    assert len(schedulers.make_scheduler(models["prior"].scheduler_config).set_timesteps(top)) == top
    with pytest.raises(ValueError, match=f"prior steps .* must be an integer from 2 to {top}"):
        _prior_call(nodes, models, steps=top + 1)


# --- item 5: non-finite and far out-of-range pixels are refused ----------------------------------

def _poisoned(kind, shape):
    x = torch.rand(*shape, generator=gen(5))
    if kind == "nan":
        x[..., 0, 0] = float("nan")
    elif kind == "inf":
        x[..., 0, 0] = float("inf")
    else:  # an image in 0..255, as a PIL array loaded without scaling gives
        x = x * 255
    return x


IMAGE = (1, 16, 16, 3)
MASK = (1, 16, 16)
PIXEL_CASES = {  # node input -> node call taking the poisoned tensor
    "MoVQEncode.image": lambda n, m, c, x: call(n["KandinskyMoVQEncode"], movq=m["inpaint"][1], image=x),
    "MoVQEncode.mask": lambda n, m, c, x: call(n["KandinskyMoVQEncode"], movq=m["inpaint"][1],
                                               image=rand_image(16, 16, 3), mask=x),
    "ImageEmbed.image": lambda n, m, c, x: call(n["KandinskyImageEmbed"], prior=m["prior"], image=x),
    "PriorEmb2Emb.image": lambda n, m, c, x: call(n["KandinskyPriorEmb2Emb"], prior=m["prior"], image=x,
                                                  prompt="a cat", negative_prompt="", strength=0.5, seed=1, steps=2,
                                                  guidance_scale=4.0),
    "MaskInvert.mask": lambda n, m, c, x: call(n["KandinskyMaskInvert"], mask=x),
    "UNetSampler.latent noise_mask": lambda n, m, c, x: call(
        n["KandinskyUNetSampler"], unet=m["inpaint"][0], embeds=fixed_embeds(c),
        latent={"samples": torch.zeros(1, 4, 2, 2), "noise_mask": x}, seed=1, steps=2, guidance_scale=4.0,
        sampler="ddpm", denoise=1.0),
}
DEPTH_CASE = lambda n, m, c, x: call(n["KandinskyDepthHint"], image=x)  # noqa: E731


@pytest.mark.parametrize("kind", ["nan", "inf", "0..255"])
@pytest.mark.parametrize("where", sorted(PIXEL_CASES))
def test_bad_pixels_are_refused(nodes, models, core, where, kind):
    x = _poisoned(kind, MASK if "mask" in where else IMAGE)
    expected = "NaN or infinite" if kind != "0..255" else r"far outside 0\.\.1.*divide by 255"
    with pytest.raises(ValueError, match=expected):
        PIXEL_CASES[where](nodes, models, core, x)


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_depth_hint_refuses_non_finite(nodes, models, core, kind):
    with pytest.raises(ValueError, match="NaN or infinite"):
        DEPTH_CASE(nodes, models, core, _poisoned(kind, IMAGE))


def test_small_overshoot_is_accepted(nodes, models, core):
    """Filters (sharpen, upscalers) overshoot 0..1 a little: that is no error."""
    image = rand_image(16, 16, 3) * 1.2 - 0.1  # -0.1 .. 1.1
    latent = call(nodes["KandinskyMoVQEncode"], movq=models["inpaint"][1], image=image,
                  mask=block_mask(16, 16) * 1.3 - 0.1)[0]
    assert torch.isfinite(latent["samples"]).all()
    assert latent["noise_mask"].min() >= 0 and latent["noise_mask"].max() <= 1
    assert call(nodes["KandinskyImageEmbed"], prior=models["prior"], image=image)[0].batch == 1


# --- item 6: configs are range-checked, and sized against the weights, before anything is built ---

def _repo_copy(tmp_path, name):
    shutil.copytree(tiny_model_dir() / name, tmp_path / name, symlinks=True)
    return tmp_path / name


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _load(repo, core_loading):
    return (core_loading.load_prior if repo.name == PRIOR else core_loading.load_decoder)(repo)


BAD_CONFIGS = [  # (repo, file, changes, field named in the error)
    (DECODER, "unet/config.json", {"norm_num_groups": 0}, "norm_num_groups=0"),
    (DECODER, "unet/config.json", {"layers_per_block": 100000}, "layers_per_block=100000"),
    (DECODER, "unet/config.json", {"block_out_channels": [32, 0]}, "block_out_channels=[32, 0]"),
    (DECODER, "unet/config.json", {"attention_head_dim": -4}, "attention_head_dim=-4"),
    (DECODER, "unet/config.json", {"norm_eps": -1.0}, "norm_eps=-1.0"),
    (DECODER, "unet/config.json", {"block_out_channels": 64}, "block_out_channels=64"),
    (DECODER, "movq/config.json", {"block_out_channels": [10**6] * 2}, "block_out_channels=[1000000, 1000000]"),
    (DECODER, "movq/config.json", {"num_vq_embeddings": 10**12}, "num_vq_embeddings=1000000000000"),
    (DECODER, "movq/config.json", {"layers_per_block": 0}, "layers_per_block=0"),
    (DECODER, "scheduler/scheduler_config.json", {"num_train_timesteps": 10**12},
     "num_train_timesteps=1000000000000"),
    (DECODER, "scheduler/scheduler_config.json", {"beta_start": 0.5, "beta_end": 2.0}, "beta_end=2.0"),
    (DECODER, "scheduler/scheduler_config.json", {"beta_start": 0.0}, "beta_start=0.0"),
    (DECODER, "scheduler/scheduler_config.json", {"steps_offset": 10**6}, "steps_offset=1000000"),
    (PRIOR, "prior/config.json", {"num_layers": 100000}, "num_layers=100000"),
    (PRIOR, "prior/config.json", {"num_attention_heads": 0}, "num_attention_heads=0"),
    (PRIOR, "prior/config.json", {"num_embeddings": -1}, "num_embeddings=-1"),
    (PRIOR, "scheduler/scheduler_config.json", {"num_train_timesteps": 10**12}, "num_train_timesteps=1000000000000"),
]


@pytest.mark.parametrize("repo,file,changes,field", BAD_CONFIGS, ids=[f"{c[1]}:{c[3]}" for c in BAD_CONFIGS])
def test_bad_config_value_names_file_field_and_range(tmp_path, repo, file, changes, field):
    import kandinsky_core.loading.components as loading

    folder = _repo_copy(tmp_path, repo)
    _edit_json(folder / file, **changes)
    with pytest.raises(ValueError) as info:
        _load(folder, loading)
    message = str(info.value)
    assert str(folder / file) in message and field in message, message
    assert "allowed" in message or "supported" in message, message


def test_mclip_config_ranges():
    from kandinsky_core.models.mclip import K21_MCLIP_CONFIG, MCLIPConfig

    for key, value in (("num_hidden_layers", 10**6), ("hidden_size", 0), ("vocab_size", 10**12),
                       ("layer_norm_eps", -1.0), ("pad_token_id", -1)):
        with pytest.raises(ValueError, match=f"M-CLIP config: {key}={value!r} is out of range; allowed"):
            MCLIPConfig.from_dict({**K21_MCLIP_CONFIG, key: value})


@pytest.mark.parametrize("repo,file,changes", [
    (DECODER, "unet/config.json", {"layers_per_block": 16}),
    (DECODER, "movq/config.json", {"block_out_channels": [4096, 4096]}),
    (PRIOR, "prior/config.json", {"num_layers": 128}),
], ids=["unet", "movq", "prior"])
def test_config_larger_than_its_weights_is_refused_before_reading_them(tmp_path, monkeypatch, repo, file, changes):
    """Each size in range, but the model is far larger than the weight files: refused from the file sizes."""
    import kandinsky_core.loading.components as loading

    folder = _repo_copy(tmp_path, repo)
    _edit_json(folder / file, **changes)
    component = file.split("/")[0]
    original = loading.read_component_weights

    def read(path, *args, **kwargs):
        assert path.name != component, f"{component} weights read before the size check"
        return original(path, *args, **kwargs)

    monkeypatch.setattr(loading, "read_component_weights", read)
    with pytest.raises(ValueError, match=r"parameters \(at least .* GB of weights in fp16\), but its weight files"):
        _load(folder, loading)


def test_models_are_built_on_the_meta_device(monkeypatch):
    """Nothing is allocated while a model is built: its parameters are created on the meta device (the
    checkpoint's tensors are then assigned by load_strict)."""
    import kandinsky_core.loading.components as loading

    created, loading_weights = [], []
    original_new, original_load = torch.nn.Parameter.__new__, loading.load_strict

    def record(cls, data=None, requires_grad=True):
        if data is not None and not loading_weights:
            created.append(data.device.type)
        return original_new(cls, data, requires_grad)

    def load_strict(module, *args, **kwargs):
        loading_weights.append(module)
        try:
            return original_load(module, *args, **kwargs)
        finally:
            loading_weights.pop()

    repo = tiny_model_dir() / DECODER  # built (with real parameters) before recording starts
    monkeypatch.setattr(torch.nn.Parameter, "__new__", record)
    monkeypatch.setattr(loading, "load_strict", load_strict)
    unet, movq = loading.load_decoder(repo)
    assert created and set(created) == {"meta"}, sorted(set(created))
    assert not any(p.is_meta for p in unet.unet.parameters()) and not any(p.is_meta for p in movq.movq.parameters())
