"""The node pack through NODE_CLASS_MAPPINGS, as ComfyUI calls it, on tiny models (tier 2, CPU).

Node graphs must equal the core stage functions for the same seeds (<= 1e-6), which the pipeline tests tie
to diffusers; two graphs are also checked against the diffusers pipelines directly (<= 1e-4).
"""
import gc
import importlib
import inspect
import json
import os
import weakref

import pytest
import torch
from tiny_models.node_repos import (DECODER, DEPTH, DEPTH_ESTIMATOR, INPAINT, K3, NOT_A_REPO, OTHER_PIPELINE, PRIOR, assert_same,  # noqa: F401
                                    block_mask, call, core, gen, models, node_inputs, nodes, rand_image,
                                    tiny_model_dir)

SNAPSHOT = os.path.join(os.path.dirname(__file__), "node_contract_snapshot.json")
DIFFUSERS_TOL = 1e-4  # node graph vs diffusers pipelines (as tests/test_pipelines_22.py)

# DESIGN.md's node table: node id -> (required inputs, optional inputs, outputs). Frozen public contract;
# optional inputs may be added (the loaders' memory_mode came later).
DESIGN_TABLE = {
    "KandinskyPriorLoader": (["prior_name", "dtype"], ["memory_mode"], ["KANDINSKY_PRIOR"]),
    "KandinskyDecoderLoader": (["decoder_name", "dtype"], ["memory_mode"], ["KANDINSKY_UNET", "KANDINSKY_MOVQ"]),
    "KandinskyPriorEncode": (["prior", "prompt", "negative_prompt", "seed", "steps", "guidance_scale", "batch_size"],
                             [], ["KANDINSKY_EMBEDS"]),
    "KandinskyImageEmbed": (["prior", "image"], [], ["KANDINSKY_EMBEDS"]),
    "KandinskyInterpolate": (["embeds_1", "weight_1", "embeds_2", "weight_2"],
                             [f"{k}_{i}" for i in range(3, 9) for k in ("embeds", "weight")], ["KANDINSKY_EMBEDS"]),
    "KandinskyPriorEmb2Emb": (["prior", "image", "prompt", "negative_prompt", "strength", "seed", "steps",
                               "guidance_scale"], [], ["KANDINSKY_EMBEDS"]),
    "KandinskyDepthHint": (["image"], [], ["KANDINSKY_HINT"]),
    "KandinskyMaskInvert": (["mask"], [], ["MASK"]),
    "KandinskyMoVQEncode": (["movq", "image"], ["mask", "tile_size"], ["LATENT"]),
    "KandinskyUNetSampler": (["unet", "embeds", "latent", "seed", "steps", "guidance_scale", "sampler", "denoise"],
                             ["hint"], ["LATENT"]),
    "KandinskyMoVQDecode": (["movq", "latent"], ["tile_size"], ["IMAGE"]),
    "KandinskyTextEncoderLoader": (["text_encoder_name", "dtype"], ["memory_mode"], ["KANDINSKY_TEXT_ENCODER"]),
    "KandinskyTextEncode": (["text_encoder", "prompt", "negative_prompt"], [], ["KANDINSKY_EMBEDS"]),
    "KandinskyUNetToModel": (["unet"], [], ["MODEL"]),
    "KandinskyConditioning": (["embeds"], ["hint"], ["CONDITIONING", "CONDITIONING"]),
    "KandinskyMoVQToVAE": (["movq"], [], ["VAE"]),
    "KandinskyDepthModelLoader": (["depth_model_name"], [], ["KANDINSKY_DEPTH_MODEL"]),
    "KandinskyDepthEstimate": (["depth_model", "image"], [], ["IMAGE"]),
}
MODEL_LIST = "<kandinsky repo folders>"  # loader combos depend on the installed models: not in the snapshot



# --- contract ------------------------------------------------------------------------------------

def test_mappings_match_design_table(nodes, pack):
    assert list(nodes) == list(DESIGN_TABLE)
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(nodes)
    assert pack.WEB_DIRECTORY == "./web"
    for node_id, (required, optional, outputs) in DESIGN_TABLE.items():
        spec = nodes[node_id].INPUT_TYPES()
        assert list(spec["required"]) == required, node_id
        assert list(spec.get("optional", {})) == optional, node_id
        assert list(nodes[node_id].RETURN_TYPES) == outputs, node_id


@pytest.mark.parametrize("node_id", list(DESIGN_TABLE))
def test_node_contract(nodes, node_id):
    cls = nodes[node_id]
    assert cls.CATEGORY == "Kandinsky"
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 30
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS)
    spec = cls.INPUT_TYPES()
    params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for section in ("required", "optional"):
        for name, (kind, *rest) in spec.get(section, {}).items():
            assert rest and rest[0].get("tooltip"), f"{node_id}.{name} has no tooltip"
            assert takes_kwargs or name in params, f"{node_id}.{cls.FUNCTION} does not take {name}"


def contract_snapshot(nodes) -> dict:
    """Every node's public contract: input names, types, widget options (tooltips aside) and outputs."""
    snapshot = {}
    for node_id, cls in nodes.items():
        inputs = {}
        for section, entries in cls.INPUT_TYPES().items():
            inputs[section] = {}
            for name, (kind, *rest) in entries.items():
                options = {k: v for k, v in (rest[0] if rest else {}).items() if k != "tooltip"}
                if name in ("prior_name", "decoder_name", "depth_model_name"):
                    kind = MODEL_LIST
                inputs[section][name] = [kind, options]
        snapshot[node_id] = {
            "input": inputs, "output": list(cls.RETURN_TYPES), "output_name": list(cls.RETURN_NAMES),
            "function": cls.FUNCTION, "category": cls.CATEGORY, "output_node": getattr(cls, "OUTPUT_NODE", False),
        }
    return json.loads(json.dumps(snapshot))


def test_contract_snapshot(nodes):
    """Set UPDATE_SNAPSHOT=1 to rewrite the golden file after an intended change of the node contract."""
    current = contract_snapshot(nodes)
    if os.environ.get("UPDATE_SNAPSHOT") == "1":
        with open(SNAPSHOT, "w", encoding="utf-8") as f:
            json.dump(current, f, indent=1, sort_keys=True)
            f.write("\n")
    if not os.path.isfile(SNAPSHOT):
        pytest.fail(f"{SNAPSHOT} is missing: create it with UPDATE_SNAPSHOT=1.")
    with open(SNAPSHOT, encoding="utf-8") as f:
        golden = json.load(f)
    assert current == golden, "The node contract changed; if intended, rerun with UPDATE_SNAPSHOT=1 and commit."


# --- model folders and caching -----------------------------------------------------------------

def test_loader_lists_repo_folders_by_role(nodes):
    priors = nodes["KandinskyPriorLoader"].INPUT_TYPES()["required"]["prior_name"][0]
    decoders = nodes["KandinskyDecoderLoader"].INPUT_TYPES()["required"]["decoder_name"][0]
    text_encoders = nodes["KandinskyTextEncoderLoader"].INPUT_TYPES()["required"]["text_encoder_name"][0]
    assert priors == [PRIOR]
    assert decoders == sorted([DECODER, INPAINT, DEPTH, K3])
    assert text_encoders == [K3]  # the Kandinsky 3 repo folder holds its text encoder
    assert NOT_A_REPO not in decoders and OTHER_PIPELINE not in decoders


def test_model_dir_env_lists_every_root(nodes, tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my-decoder").symlink_to(tiny_model_dir() / DECODER, target_is_directory=True)
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", os.pathsep.join([str(tiny_model_dir()), str(tmp_path)]))
    decoders = nodes["KandinskyDecoderLoader"].INPUT_TYPES()["required"]["decoder_name"][0]
    assert decoders == sorted([DECODER, INPAINT, DEPTH, K3]) + ["mine/my-decoder"]
    unet, _ = call(nodes["KandinskyDecoderLoader"], decoder_name="mine/my-decoder", dtype="fp32")
    assert unet.variant.task == "text2img"


def test_default_model_dir(nodes, tmp_path, monkeypatch):
    monkeypatch.delenv("KANDINSKY_MODEL_DIR")
    monkeypatch.chdir(tmp_path)
    assert nodes["KandinskyPriorLoader"].INPUT_TYPES()["required"]["prior_name"][0] == []
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "kandinsky").symlink_to(tiny_model_dir(), target_is_directory=True)
    assert nodes["KandinskyPriorLoader"].INPUT_TYPES()["required"]["prior_name"][0] == [PRIOR]


def test_loaded_models_are_cached_and_released(nodes, models):
    cache = importlib.import_module("kandinsky_pack.nodes.cache")
    loader = nodes["KandinskyPriorLoader"]()
    first = call(loader, prior_name=PRIOR, dtype="fp32")[0]
    assert first is models["prior"]  # same folder and dtype as the fixture's loader: shared
    assert call(loader, prior_name=PRIOR, dtype="fp32")[0] is first  # unchanged inputs: reused
    other = call(loader, prior_name=PRIOR, dtype="bf16")[0]  # another choice: loads, lets go of the old one
    assert other is not first and other.dtype == torch.bfloat16 and other.prior.clip_mean.dtype == torch.bfloat16
    keys = cache.cached_keys()
    assert sum(k[0] == "prior" for k in keys) == 2  # fp32 (still used by the fixture's loader) and bf16

    loader = nodes["KandinskyDecoderLoader"]()
    unet, movq = call(loader, decoder_name=DECODER, dtype="bf16")
    key = next(k for k in cache.cached_keys() if k[0] == "decoder" and k[2] == torch.bfloat16)
    unet_module = weakref.ref(unet.unet)
    del unet, movq
    call(loader, decoder_name=DECODER, dtype="fp32")  # switch: the bf16 decoder is released
    gc.collect()
    assert key not in cache.cached_keys() and unet_module() is None
    fp32_key = (key[0], key[1], torch.float32, False, torch.float32, "auto")  # False: no fp8 storage
    assert fp32_key in cache.cached_keys()
    del loader  # a node removed from the graph lets go of its model (here shared with the fixture's loader)
    gc.collect()
    assert fp32_key in cache.cached_keys() and models["decoder"][0].unet.conv_in.weight.dtype == torch.float32


def test_memory_modes_give_the_same_image(nodes, models):
    """Each loader memory_mode through a node graph (outside ComfyUI: LocalRuntime's modes) == auto."""
    memory = importlib.import_module("kandinsky_pack.kandinsky_core.memory")
    runtime = importlib.import_module("kandinsky_pack.nodes.runtime")
    images = {}
    for mode in ("auto", "gpu", "model_offload", "lowvram"):
        loaders = nodes["KandinskyPriorLoader"](), nodes["KandinskyDecoderLoader"]()
        prior = call(loaders[0], prior_name=PRIOR, dtype="fp32", memory_mode=mode)[0]
        unet, movq = call(loaders[1], decoder_name=DECODER, dtype="fp32", memory_mode=mode)
        assert prior.memory_mode == unet.memory_mode == movq.memory_mode == mode
        assert (prior is models["prior"]) == (mode == "auto")  # the mode is part of the cache key
        assert runtime.runtime_for(unet, "unet").memory_mode == ("gpu" if mode == "auto" else mode)
        embeds = node_embeds(nodes, prior, "a red cat", "", seed=3)
        images[mode] = node_decode(nodes, unet, movq, embeds, {"samples": torch.zeros(1, 4, 16, 16)}, 5, 3)
        streamed = [memory.is_streamed(m) for m in (prior.prior, prior.text_encoder, unet.unet, movq.movq)]
        assert streamed == [mode == "lowvram"] * 4, mode
    for mode in ("gpu", "model_offload", "lowvram"):
        assert torch.equal(images[mode], images["auto"]), mode
    with pytest.raises(ValueError, match="memory_mode 'disk'"):
        call(nodes["KandinskyDecoderLoader"], decoder_name=DECODER, dtype="fp32", memory_mode="disk")


def test_decoder_loader_variants(models):
    assert [models[k][0].variant.task for k in ("decoder", "inpaint", "depth")] == ["text2img", "inpaint", "depth"]
    assert models["decoder"][1].scale_factor == 2 and models["depth"][1].scale_factor == 8


# --- every node from its INPUT_TYPES defaults ----------------------------------------------------

def test_every_node_runs_from_defaults(nodes, models, core):
    image = rand_image(32, 32, 0)
    embeds = core.payloads.Embeds(torch.rand(1, 32, generator=gen(1)), torch.rand(1, 32, generator=gen(2)), "2.2")
    unet, movq = models["decoder"]
    sockets = {
        "KandinskyPriorLoader": {}, "KandinskyDecoderLoader": {},
        "KandinskyPriorEncode": {"prior": models["prior"]},
        "KandinskyImageEmbed": {"prior": models["prior"], "image": image},
        "KandinskyInterpolate": {"embeds_1": embeds, "embeds_2": embeds},
        "KandinskyPriorEmb2Emb": {"prior": models["prior"], "image": image},
        "KandinskyDepthHint": {"image": image},
        "KandinskyMaskInvert": {"mask": block_mask(32, 32)},
        "KandinskyMoVQEncode": {"movq": movq, "image": image, "mask": block_mask(32, 32)},
        "KandinskyUNetSampler": {"unet": unet, "embeds": embeds, "latent": {"samples": torch.zeros(1, 4, 8, 8)}},
        "KandinskyMoVQDecode": {"movq": movq, "latent": {"samples": torch.zeros(1, 4, 8, 8)}},
        "KandinskyTextEncoderLoader": {},
        "KandinskyTextEncode": {"text_encoder": call(nodes["KandinskyTextEncoderLoader"], text_encoder_name=K3,
                                                     dtype="fp32")[0]},
        "KandinskyConditioning": {"embeds": embeds},
        "KandinskyDepthModelLoader": {},
        "KandinskyDepthEstimate": {"depth_model": call(nodes["KandinskyDepthModelLoader"],
                                                       depth_model_name=DEPTH_ESTIMATOR)[0], "image": image},
    }
    comfy_only = {"KandinskyUNetToModel", "KandinskyMoVQToVAE"}  # make ComfyUI objects: tests/test_bridge*.py
    kinds = {
        "KANDINSKY_PRIOR": core.components.PriorModels, "KANDINSKY_UNET": core.components.DecoderUNet,
        "KANDINSKY_MOVQ": core.components.MoVQModel, "KANDINSKY_EMBEDS": core.payloads.Embeds,
        "KANDINSKY_HINT": core.payloads.Hint, "IMAGE": torch.Tensor, "MASK": torch.Tensor, "LATENT": dict,
        "KANDINSKY_TEXT_ENCODER": core.components.TextEncoderModels,
        "CONDITIONING": list,
        "KANDINSKY_DEPTH_MODEL": core.components.DepthModel,
    }
    kinds_of = {"KandinskyTextEncode": {"KANDINSKY_EMBEDS": core.payloads.TextEmbeds}}
    for node_id, cls in nodes.items():
        if node_id in comfy_only:
            continue
        outputs = call(cls, **node_inputs(cls, sockets[node_id]))
        assert isinstance(outputs, tuple) and len(outputs) == len(cls.RETURN_TYPES), node_id
        for kind, value in zip(cls.RETURN_TYPES, outputs):
            assert isinstance(value, kinds_of.get(node_id, kinds)[kind]), (node_id, kind)
            tensor = value["samples"] if kind == "LATENT" else value if kind in ("IMAGE", "MASK") else None
            if tensor is not None:
                assert tensor.device.type == "cpu" and tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
    image_out = call(nodes["KandinskyMoVQDecode"], movq=movq, latent={"samples": torch.zeros(1, 4, 8, 8)})[0]
    assert image_out.shape == (1, 16, 16, 3) and 0 <= image_out.min() and image_out.max() <= 1
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=image, mask=block_mask(8, 8))[0]
    assert latent["samples"].shape == (1, 4, 16, 16) and latent["noise_mask"].shape == (1, 1, 32, 32)
    assert torch.equal(call(nodes["KandinskyMaskInvert"], mask=block_mask(8, 8))[0], 1 - block_mask(8, 8))


# --- node graphs == core stage functions ---------------------------------------------------------

def node_embeds(nodes, prior, prompt, negative, seed, steps=3, batch=1):
    return call(nodes["KandinskyPriorEncode"], prior=prior, prompt=prompt, negative_prompt=negative, seed=seed,
                steps=steps, guidance_scale=4.0, batch_size=batch)[0]


def core_embeds(core, prior, prompt, negative, seed, steps=3, batch=1):
    return core.prior.prior_encode(prior, prompt, negative or None, generator=gen(seed), steps=steps,
                                   guidance_scale=4.0, num_images_per_prompt=batch, runtime=core.rt)


def node_decode(nodes, unet, movq, embeds, latent, seed, steps, sampler="ddpm", denoise=1.0, hint=None, gs=4.0):
    extra = {"hint": hint} if hint is not None else {}
    out = call(nodes["KandinskyUNetSampler"], unet=unet, embeds=embeds, latent=latent, seed=seed, steps=steps,
               guidance_scale=gs, sampler=sampler, denoise=denoise, **extra)[0]
    assert "noise_mask" not in out
    return call(nodes["KandinskyMoVQDecode"], movq=movq, latent=out)[0]


def core_decode(core, unet, movq, embeds, latents, seed, steps, sampler="ddpm", denoise=1.0, hint=None, mask=None,
                gs=4.0):
    out = core.decoder.sample(unet, embeds, latents, generator=gen(seed), steps=steps, guidance_scale=gs,
                              sampler=sampler, denoise=denoise, hint=hint, mask=mask, runtime=core.rt)
    return core.movq.decode(movq, out, runtime=core.rt)


@pytest.mark.parametrize("negative,sampler", [("", "ddpm"), ("low quality", "ddim")])
def test_t2i_graph(nodes, models, core, negative, sampler):
    unet, movq = models["decoder"]
    embeds = node_embeds(nodes, models["prior"], "a red cat", negative, seed=3, batch=2)
    ref_embeds = core_embeds(core, models["prior"], "a red cat", negative, seed=3, batch=2)
    assert_same(embeds.image_embeds, ref_embeds.image_embeds)
    assert_same(embeds.negative_image_embeds, ref_embeds.negative_image_embeds)
    image = node_decode(nodes, unet, movq, embeds, {"samples": torch.zeros(1, 4, 16, 16)}, 5, 3, sampler)
    assert image.shape == (2, 32, 32, 3)  # a batch-1 latent follows the embeds' batch
    assert_same(image, core_decode(core, unet, movq, ref_embeds, torch.zeros(1, 4, 16, 16), 5, 3, sampler))


def test_i2i_graph(nodes, models, core):
    unet, movq = models["decoder"]
    picture = rand_image(32, 32, 11)
    embeds = node_embeds(nodes, models["prior"], "a house", "", seed=1)
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=picture)[0]
    image = node_decode(nodes, unet, movq, embeds, latent, 6, 10, "ddim", denoise=0.35)
    init = core.movq.encode(movq, picture, runtime=core.rt)
    ref = core_decode(core, unet, movq, core_embeds(core, models["prior"], "a house", "", 1), init, 6, 10, "ddim", 0.35)
    assert_same(image, ref)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_inpaint_graph(nodes, models, core, sampler):
    unet, movq = models["inpaint"]
    picture, mask = rand_image(32, 32, 13), block_mask(32, 32)
    embeds = node_embeds(nodes, models["prior"], "a dog", "", seed=2)
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=picture, mask=mask)[0]
    assert latent["noise_mask"].shape == (1, 1, 32, 32)
    image = node_decode(nodes, unet, movq, embeds, latent, 7, 3, sampler)
    init = core.movq.encode(movq, picture, runtime=core.rt)
    ref = core_decode(core, unet, movq, core_embeds(core, models["prior"], "a dog", "", 2), init, 7, 3, sampler,
                      mask=mask)
    assert_same(image, ref)


def test_inpaint_mask_of_another_size_and_old_convention(nodes, models, core):
    unet, movq = models["inpaint"]
    picture = rand_image(32, 32, 13)
    old_convention = 1 - block_mask(16, 16)  # black = repaint, half size
    mask = call(nodes["KandinskyMaskInvert"], mask=old_convention)[0]
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=picture, mask=mask)[0]
    assert latent["noise_mask"].shape == (1, 1, 32, 32)
    embeds = node_embeds(nodes, models["prior"], "a dog", "", seed=2)
    image = node_decode(nodes, unet, movq, embeds, latent, 7, 3)
    init = core.movq.encode(movq, picture, runtime=core.rt)
    ref = core_decode(core, unet, movq, embeds, init, 7, 3, mask=block_mask(32, 32))
    assert_same(image, ref)


def test_interpolate_graph(nodes, models, core):
    unet, movq = models["decoder"]
    picture = rand_image(96, 96, 3)
    parts = [node_embeds(nodes, models["prior"], "horse", "", 1),
             node_embeds(nodes, models["prior"], "a red cat", "", 2),
             call(nodes["KandinskyImageEmbed"], prior=models["prior"], image=picture)[0]]
    mixed = call(nodes["KandinskyInterpolate"], embeds_1=parts[0], weight_1=0.3, embeds_2=parts[1], weight_2=0.5,
                 embeds_3=parts[2], weight_3=0.2, weight_4=0.7)[0]  # weight_4 without embeds_4: ignored
    ref_parts = [core_embeds(core, models["prior"], "horse", "", 1),
                 core_embeds(core, models["prior"], "a red cat", "", 2),
                 core.prior.image_embed(models["prior"], picture, runtime=core.rt)]
    ref = core.prior.interpolate(ref_parts, [0.3, 0.5, 0.2])
    assert_same(mixed.image_embeds, ref.image_embeds)
    assert_same(mixed.negative_image_embeds, ref.negative_image_embeds)
    latent = {"samples": torch.zeros(1, 4, 16, 16)}
    assert_same(node_decode(nodes, unet, movq, mixed, latent, 8, 3),
                core_decode(core, unet, movq, ref, latent["samples"], 8, 3))


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_emb2emb_graph(nodes, models, core, negative):
    unet, movq = models["decoder"]
    picture = rand_image(128, 128, 5)
    embeds = call(nodes["KandinskyPriorEmb2Emb"], prior=models["prior"], image=picture, prompt="horse",
                  negative_prompt=negative, strength=0.5, seed=4, steps=4, guidance_scale=4.0)[0]
    ref = core.prior.emb2emb(models["prior"], picture, "horse", negative or None, strength=0.5, generator=gen(4),
                             steps=4, guidance_scale=4.0, runtime=core.rt)
    assert_same(embeds.image_embeds, ref.image_embeds)
    assert_same(embeds.negative_image_embeds, ref.negative_image_embeds)
    latent = {"samples": torch.zeros(1, 4, 16, 16)}
    assert_same(node_decode(nodes, unet, movq, embeds, latent, 9, 3),
                core_decode(core, unet, movq, ref, latent["samples"], 9, 3))


def test_depth_t2i_graph(nodes, models, core):
    unet, movq = models["depth"]
    depth = rand_image(64, 64, 4)
    hint = call(nodes["KandinskyDepthHint"], image=depth)[0]
    embeds = node_embeds(nodes, models["prior"], "a room", "", seed=5)
    image = node_decode(nodes, unet, movq, embeds, {"samples": torch.zeros(1, 4, 8, 8)}, 10, 3, hint=hint)
    ref = core_decode(core, unet, movq, core_embeds(core, models["prior"], "a room", "", 5), torch.zeros(1, 4, 8, 8),
                      10, 3, hint=core.hints.depth_hint(depth))
    assert image.shape == (1, 64, 64, 3)
    assert_same(image, ref)


def test_depth_i2i_graph(nodes, models, core):
    unet, movq = models["depth"]
    picture, depth = rand_image(64, 64, 17), rand_image(32, 32, 5)[..., :1] * 7.0  # 1 channel, other range
    hint = call(nodes["KandinskyDepthHint"], image=depth)[0]
    embeds = node_embeds(nodes, models["prior"], "a room", "", seed=5)
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=picture)[0]
    image = node_decode(nodes, unet, movq, embeds, latent, 11, 10, "ddim", denoise=0.5, hint=hint)
    init = core.movq.encode(movq, picture, runtime=core.rt)
    ref = core_decode(core, unet, movq, core_embeds(core, models["prior"], "a room", "", 5), init, 11, 10, "ddim", 0.5,
                      hint=core.hints.depth_hint(depth))
    assert_same(image, ref)


# --- node graphs == diffusers ------------------------------------------------------------------

def test_t2i_and_i2i_graphs_match_diffusers(nodes, models):
    import diffusers
    from tiny_models.repos import reference_pipeline

    prior_pipe = reference_pipeline("KandinskyV22PriorPipeline", tiny_model_dir() / PRIOR)
    ref_embeds = prior_pipe("a red cat", num_inference_steps=3, guidance_scale=4.0, generator=gen(3))
    pipe = reference_pipeline("KandinskyV22Pipeline", tiny_model_dir() / DECODER)
    ref = pipe(image_embeds=ref_embeds.image_embeds, negative_image_embeds=ref_embeds.negative_image_embeds,
               height=32, width=32, num_inference_steps=3, guidance_scale=4.0, generator=gen(5),
               output_type="np").images
    ref = torch.from_numpy(ref)
    unet, movq = models["decoder"]
    embeds = node_embeds(nodes, models["prior"], "a red cat", "", seed=3)
    image = node_decode(nodes, unet, movq, embeds, {"samples": torch.zeros(1, 4, 16, 16)}, 5, 3)
    assert_same(image, ref, DIFFUSERS_TOL)

    picture = rand_image(32, 32, 11)
    i2i = diffusers.KandinskyV22Img2ImgPipeline(**pipe.components)
    i2i.set_progress_bar_config(disable=True)
    ref = i2i(image=picture.permute(0, 3, 1, 2), image_embeds=ref_embeds.image_embeds,
              negative_image_embeds=ref_embeds.negative_image_embeds, height=32, width=32, num_inference_steps=10,
              strength=0.35, guidance_scale=7.0, generator=gen(6), output_type="np").images
    ref = torch.from_numpy(ref)
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=picture)[0]
    image = node_decode(nodes, unet, movq, embeds, latent, 6, 10, "ddpm", denoise=0.35, gs=7.0)
    assert_same(image, ref, DIFFUSERS_TOL)


# --- sizes and batches ----------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(8, 8), (9, 17), (45, 80)])  # 64x64, 72x136, 1280x720 at 1/8 real scale
def test_latent_sizes_come_back_exactly(nodes, models, core, h, w):
    unet, movq = models["decoder"]
    embeds = core.payloads.Embeds(torch.rand(1, 32, generator=gen(1)), torch.rand(1, 32, generator=gen(2)), "2.2")
    latent = {"samples": torch.zeros(1, 4, h, w), "batch_index": [0]}
    out = call(nodes["KandinskyUNetSampler"], unet=unet, embeds=embeds, latent=latent, seed=1, steps=2,
               guidance_scale=4.0, sampler="ddim", denoise=1.0)[0]
    assert out["samples"].shape == (1, 4, h, w) and out["batch_index"] == [0]
    assert_same(out["samples"], core.decoder.sample(unet, embeds, torch.zeros(1, 4, h, w), generator=gen(1), steps=2,
                                                    sampler="ddim", runtime=core.rt))
    if h * w < 1000:  # decoding the largest one only costs time: the MoVQ factor is fixed
        assert call(nodes["KandinskyMoVQDecode"], movq=movq, latent=out)[0].shape == (1, 2 * h, 2 * w, 3)


def test_odd_sizes_for_depth_and_inpaint(nodes, models, core):
    embeds = core.payloads.Embeds(torch.rand(1, 32, generator=gen(1)), torch.rand(1, 32, generator=gen(2)), "2.2")
    unet, movq = models["depth"]
    hint = call(nodes["KandinskyDepthHint"], image=rand_image(40, 40, 1))[0]
    image = node_decode(nodes, unet, movq, embeds, {"samples": torch.zeros(1, 4, 9, 17)}, 1, 2, hint=hint)
    assert image.shape == (1, 72, 136, 3)
    unet, movq = models["inpaint"]
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=rand_image(18, 34, 2), mask=block_mask(18, 34))[0]
    assert latent["samples"].shape == (1, 4, 9, 17)
    assert node_decode(nodes, unet, movq, embeds, latent, 1, 2).shape == (1, 18, 34, 3)


def test_latent_batch_reuses_embeds_cyclically(nodes, models, core):
    unet, _ = models["decoder"]
    embeds = node_embeds(nodes, models["prior"], "a red cat", "", seed=3, batch=2)
    latent = {"samples": torch.zeros(3, 4, 8, 8)}
    out = call(nodes["KandinskyUNetSampler"], unet=unet, embeds=embeds, latent=latent, seed=2, steps=2,
               guidance_scale=4.0, sampler="ddim", denoise=1.0)[0]["samples"]
    assert out.shape == (3, 4, 8, 8)
    cyclic = core.payloads.Embeds(embeds.image_embeds[[0, 1, 0]], embeds.negative_image_embeds[[0, 1, 0]], "2.2")
    assert_same(out, core.decoder.sample(unet, cyclic, torch.zeros(3, 4, 8, 8), generator=gen(2), steps=2,
                                         sampler="ddim", runtime=core.rt))
