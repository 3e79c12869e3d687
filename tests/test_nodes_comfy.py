"""The pack inside ComfyUI: folder registration, model management, progress bar and Cancel.

CI has no ComfyUI, so the first tests stand in minimal fakes of the ComfyUI modules the pack calls
(`folder_paths`, `comfy.model_management`, `comfy.model_patcher`, `comfy.utils`) with the signatures of
ComfyUI 0.3.64. With COMFYUI_PATH set, the last test runs the same checks in a subprocess against the real
modules of that checkout (CPU mode), with COMFYUI_PYTHON, else the checkout's .venv, else this Python.
"""
import gc
import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from tiny_models.node_repos import DECODER, PRIOR, REPO_NAMES, call, tiny_model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Interrupt(Exception):
    """Stands in for comfy.model_management.InterruptProcessingException."""


class FakeComfy:
    """Records what the pack asks of ComfyUI."""

    def __init__(self, models_dir):
        self.patchers, self.loads, self.bars, self.cancel_at = [], [], [], None
        self.unloads, self.frees, self.empty_caches = [], [], 0
        self.interrupted = False
        self.device_calls = {"torch": 0, "vae": 0}

        fp = types.ModuleType("folder_paths")
        fp.models_dir = str(models_dir)
        fp.folder_names_and_paths = {}

        def add_model_folder_path(name, path, is_default=False):  # as ComfyUI 0.3.64
            if name in fp.folder_names_and_paths:
                paths = fp.folder_names_and_paths[name][0]
                if path not in paths:
                    paths.insert(0, path) if is_default else paths.append(path)
            else:
                fp.folder_names_and_paths[name] = ([path], set())

        fp.add_model_folder_path = add_model_folder_path
        fp.get_folder_paths = lambda name: fp.folder_names_and_paths[name][0][:]
        self.folder_paths = fp

        mm = types.ModuleType("comfy.model_management")
        mm.InterruptProcessingException = Interrupt

        def get_torch_device():
            self.device_calls["torch"] += 1
            return torch.device("cpu")

        def vae_device():
            self.device_calls["vae"] += 1
            return torch.device("cpu")

        def throw_exception_if_processing_interrupted():
            if self.interrupted:
                self.interrupted = False
                raise Interrupt()

        class LoadedModel:  # an entry of mm.current_loaded_models
            def __init__(self, model):
                self.model, self.device = model, model.load_device

            def model_unload(self, memory_to_free=None, unpatch_weights=True):
                fake.unloads.append(self.model)
                self.model.detach(unpatch_weights)
                return True

            def __eq__(self, other):  # as ComfyUI's: the same patcher
                return self.model is other.model

        def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                            force_full_load=False):
            self.loads.append((list(models), force_full_load))
            for patcher in models:
                patcher.model.to(patcher.load_device)
                if not any(entry.model is patcher for entry in mm.current_loaded_models):
                    mm.current_loaded_models.insert(0, LoadedModel(patcher))

        def free_memory(memory_required, device, keep_loaded=[]):
            """As ComfyUI's when the device has no room left: unloads every model on it but `keep_loaded`."""
            self.frees.append((memory_required, device))
            unloaded = []
            for i in range(len(mm.current_loaded_models) - 1, -1, -1):
                entry = mm.current_loaded_models[i]
                if entry.device == device and entry not in keep_loaded and entry.model_unload():
                    unloaded.append(mm.current_loaded_models.pop(i))
            if unloaded:
                soft_empty_cache()
            return unloaded

        def soft_empty_cache(force=False):
            self.empty_caches += 1

        mm.get_torch_device, mm.vae_device = get_torch_device, vae_device
        mm.unet_offload_device = mm.vae_offload_device = mm.intermediate_device = lambda: torch.device("cpu")
        mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
        mm.load_models_gpu, mm.free_memory, mm.soft_empty_cache = load_models_gpu, free_memory, soft_empty_cache
        mm.current_loaded_models = []
        self.flags = {}  # ComfyUI's dtype flags: {"unet": dtype, "vae": dtype}

        def unet_dtype(device=None, model_params=0, supported_dtypes=(), weight_dtype=None):
            return self.flags.get("unet", torch.float32)

        def vae_dtype(device=None, allowed_dtypes=()):
            return self.flags.get("vae", torch.float32)

        mm.unet_dtype, mm.vae_dtype = unet_dtype, vae_dtype
        mm.LoadedModel = LoadedModel
        mm.loaded_models = lambda only_currently_used=False: [e.model for e in mm.current_loaded_models]
        mm.minimum_inference_memory = lambda: 1024**3 * 0.8 + 400 * 1024**2

        fake = self

        class ModelPatcher:
            def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
                self.model, self.load_device, self.offload_device = model, load_device, offload_device
                self.detached = False
                if not hasattr(model, "device"):
                    model.device = offload_device  # what the real ModelPatcher does to the module it manages
                fake.patchers.append(self)

            def detach(self, unpatch_all=True):
                self.model.to(self.offload_device)
                self.detached = True
                return self.model

        mp = types.ModuleType("comfy.model_patcher")
        mp.ModelPatcher = ModelPatcher

        class ProgressBar:
            def __init__(self, total, node_id=None):
                self.total, self.values = total, []
                fake.bars.append(self)

            def update_absolute(self, value, total=None, preview=None):
                self.values.append(value)
                if fake.cancel_at == value:  # the user pressed Cancel; the server's hook then raises
                    fake.interrupted = True
                    throw_exception_if_processing_interrupted()

        utils = types.ModuleType("comfy.utils")
        utils.ProgressBar = ProgressBar

        comfy = types.ModuleType("comfy")
        comfy.__path__ = []
        comfy.model_management, comfy.model_patcher, comfy.utils = mm, mp, utils
        self.modules = {"folder_paths": fp, "comfy": comfy, "comfy.model_management": mm,
                        "comfy.model_patcher": mp, "comfy.utils": utils}


@pytest.fixture
def comfy(pack, tmp_path, monkeypatch):
    """Fake ComfyUI modules in sys.modules, with models/kandinsky/ holding a copy of one decoder and the
    tiny models folder registered as an extra_model_paths.yaml entry (before the pack loads, as ComfyUI does)."""
    fake = FakeComfy(tmp_path / "models")
    (tmp_path / "models" / "kandinsky").mkdir(parents=True)
    (tmp_path / "models" / "kandinsky" / "own-decoder").symlink_to(tiny_model_dir() / DECODER)
    fake.folder_paths.add_model_folder_path("kandinsky", str(tiny_model_dir()))
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delenv("KANDINSKY_MODEL_DIR", raising=False)
    yield fake
    added = [n for n in sys.modules if n.startswith("kandinsky_pack_comfy")]
    for name in added + ["kandinsky_pack.nodes.comfy_runtime"]:
        sys.modules.pop(name, None)
    if hasattr(pack.nodes, "comfy_runtime"):
        del pack.nodes.comfy_runtime
    gc.collect()


def import_fresh_pack(name="kandinsky_pack_comfy"):
    """Import the pack as ComfyUI's custom node loader does (a new module, so import-time code runs)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "__init__.py"),
                                                  submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_import_registers_the_model_folder(comfy):
    pack = import_fresh_pack()
    paths = comfy.folder_paths.get_folder_paths("kandinsky")
    assert paths == [str(tiny_model_dir()), os.path.join(comfy.folder_paths.models_dir, "kandinsky")]
    decoders = pack.NODE_CLASS_MAPPINGS["KandinskyDecoderLoader"].INPUT_TYPES()["required"]["decoder_name"][0]
    assert decoders == sorted(REPO_NAMES[k] for k in ("decoder22", "inpaint22", "depth22", "k3")) + ["own-decoder"]
    unet, _ = call(pack.NODE_CLASS_MAPPINGS["KandinskyDecoderLoader"], decoder_name="own-decoder", dtype="auto")
    assert unet.variant.task == "text2img" and unet.dtype == torch.float32  # auto on a CPU torch device


def test_auto_dtype_follows_comfyui_flags(pack, comfy):
    nodes = pack.NODE_CLASS_MAPPINGS
    comfy.flags.update(unet=torch.bfloat16, vae=torch.float16)  # e.g. --bf16-unet --fp16-vae
    prior = call(nodes["KandinskyPriorLoader"](), prior_name=PRIOR, dtype="auto")[0]
    unet, movq = call(nodes["KandinskyDecoderLoader"](), decoder_name=DECODER, dtype="auto")
    assert (prior.dtype, unet.dtype, movq.dtype) == (torch.bfloat16, torch.bfloat16, torch.float16)
    comfy.flags.update(unet=torch.float8_e4m3fn, vae=torch.float32)  # --fp8_e4m3fn-unet: not for our layers
    unet, movq = call(nodes["KandinskyDecoderLoader"](), decoder_name=DECODER, dtype="auto")
    assert (unet.dtype, movq.dtype) == (torch.float32, torch.float32)
    assert call(nodes["KandinskyDecoderLoader"](), decoder_name=DECODER, dtype="fp16")[0].dtype == torch.float16


def test_model_management_progress_and_cancel(pack, comfy):
    nodes = pack.NODE_CLASS_MAPPINGS
    core_prior = importlib.import_module("kandinsky_pack.kandinsky_core.stages.prior")
    core_decoder = importlib.import_module("kandinsky_pack.kandinsky_core.stages.decoder")
    local = importlib.import_module("kandinsky_pack.kandinsky_core.runtime").LocalRuntime("cpu")
    prior_loader, decoder_loader = nodes["KandinskyPriorLoader"](), nodes["KandinskyDecoderLoader"]()
    prior = call(prior_loader, prior_name=PRIOR, dtype="fp32")[0]
    unet, movq = call(decoder_loader, decoder_name=DECODER, dtype="fp32")

    def run():
        embeds = call(nodes["KandinskyPriorEncode"], prior=prior, prompt="a cat", negative_prompt="", seed=1, steps=3,
                      guidance_scale=4.0, batch_size=1)[0]
        latent = call(nodes["KandinskyUNetSampler"], unet=unet, embeds=embeds,
                      latent={"samples": torch.zeros(1, 4, 8, 8)}, seed=2, steps=4, guidance_scale=4.0,
                      sampler="ddim", denoise=1.0)[0]
        return embeds, latent, call(nodes["KandinskyMoVQDecode"], movq=movq, latent=latent)[0]

    embeds, latent, image = run()
    ref_embeds = core_prior.prior_encode(prior, "a cat", None, generator=torch.Generator().manual_seed(1), steps=3,
                                         guidance_scale=4.0, runtime=local)
    ref = core_decoder.sample(unet, ref_embeds, torch.zeros(1, 4, 8, 8), generator=torch.Generator().manual_seed(2),
                              steps=4, sampler="ddim", runtime=local)
    assert torch.equal(embeds.image_embeds, ref_embeds.image_embeds) and torch.equal(latent["samples"], ref)

    # every core module wrapped once, loaded whole, through load_models_gpu
    managed = [p.model.inner for p in comfy.patchers]
    assert len(managed) == 5
    assert {id(m) for m in managed} == {id(m) for m in prior.modules() + unet.modules() + movq.modules()}
    assert all(full for _, full in comfy.loads)
    assert all(not hasattr(m, "model_lowvram") and "device" not in vars(m) for m in managed)  # core modules untouched
    assert comfy.device_calls["vae"] > 0  # the MoVQ follows ComfyUI's VAE placement
    # prior and sampler per step, MoVQ decode per block (its 2 levels and the mid block)
    assert [(b.total, b.values) for b in comfy.bars] == [(3, [1, 2, 3]), (4, [1, 2, 3, 4]), (3, [1, 2, 3])]

    # Cancel during step 2 stops the sampler; the next run works and is unchanged
    comfy.cancel_at = 2
    with pytest.raises(Interrupt):
        run()
    assert comfy.bars[-1].values == [1, 2]  # the prior, cancelled at its step 2
    comfy.cancel_at = None
    again = run()
    assert torch.equal(again[2], image)
    assert len(comfy.patchers) == 5  # patchers are reused, not re-created per run

    # choosing another model lets go of the old one and unloads it now
    old = [p for p in comfy.patchers if p.model.inner is unet.unet]
    call(decoder_loader, decoder_name=DECODER, dtype="bf16")
    assert old and all(p.detached for p in old)


def test_memory_modes_inside_comfyui(pack, comfy):
    """model_offload: loaded through load_models_gpu, unloaded when the stage loads other models and when the
    node returns; lowvram: no patchers, free_memory asked for room, blocks streamed, residents back after the
    node. Same image as auto."""
    nodes = pack.NODE_CLASS_MAPPINGS
    memory = importlib.import_module("kandinsky_pack.kandinsky_core.memory")
    mm = comfy.modules["comfy.model_management"]
    images, seen = {}, {}
    for mode in ("auto", "model_offload", "lowvram"):
        loaders = nodes["KandinskyPriorLoader"](), nodes["KandinskyDecoderLoader"]()
        prior = call(loaders[0], prior_name=PRIOR, dtype="fp32", memory_mode=mode)[0]
        unet, movq = call(loaders[1], decoder_name=DECODER, dtype="fp32", memory_mode=mode)
        names = {id(prior.prior): "prior", id(prior.text_encoder): "text", id(prior.image_encoder): "image",
                 id(unet.unet): "unet", id(movq.movq): "movq"}
        n_patchers = len(comfy.patchers)
        del comfy.unloads[:], comfy.frees[:], comfy.loads[:]
        after = []

        def on_gpu():  # our modules ComfyUI holds as loaded, by name
            return sorted(names[id(e.model.model.inner)] for e in mm.current_loaded_models
                          if id(e.model.model.inner) in names)

        embeds = call(nodes["KandinskyPriorEncode"], prior=prior, prompt="a cat", negative_prompt="", seed=1, steps=2,
                      guidance_scale=4.0, batch_size=1)[0]  # empty negative: the image tower runs after the prior
        after.append(on_gpu())
        latent = call(nodes["KandinskyUNetSampler"], unet=unet, embeds=embeds, seed=2, steps=2, guidance_scale=4.0,
                      latent={"samples": torch.zeros(1, 4, 8, 8)}, sampler="ddim", denoise=1.0)[0]
        after.append(on_gpu())
        images[mode] = call(nodes["KandinskyMoVQDecode"], movq=movq, latent=latent)[0]
        after.append(on_gpu())
        unloaded = [p.model.inner for p in comfy.unloads]
        lowvram = memory.manager_for("cpu", "lowvram")
        seen[mode] = dict(after=after, unloaded=len(unloaded), frees=list(comfy.frees), loads=len(comfy.loads),
                          new_patchers=len(comfy.patchers) - n_patchers,
                          streamed=[memory.is_streamed(m) for m in (prior.prior, unet.unet, movq.movq)],
                          residents=[lowvram.on_device(m) for m in (prior.prior, unet.unet, movq.movq)])
        if mode == "model_offload":  # prior + text tower when the image tower loads, the rest as their node returns
            unloaded = [names[id(m)] for m in unloaded]
            assert sorted(unloaded[:2]) == ["prior", "text"] and unloaded[2:] == ["image", "unet", "movq"]
            assert all(entry.model not in comfy.unloads for entry in mm.current_loaded_models)
        del loaders, prior, unet, movq, embeds, latent
        gc.collect()

    assert seen["auto"]["after"] == [["image", "prior", "text"], ["image", "prior", "text", "unet"],
                                     ["image", "movq", "prior", "text", "unet"]]
    assert seen["auto"]["unloaded"] == 0 and seen["auto"]["frees"] == []

    offload = seen["model_offload"]
    assert offload["after"] == [[], [], []]  # each node's models left the GPU when the node returned
    assert offload["loads"] == 4 and offload["new_patchers"] == 5 and comfy.empty_caches >= 4
    assert offload["streamed"] == [False] * 3
    assert len(offload["frees"]) == 4 and all(need >= 1e30 for need, _ in offload["frees"])  # only to unload ours

    low = seen["lowvram"]
    assert low["after"] == [[], [], []] and low["loads"] == 0 and low["new_patchers"] == 0  # ComfyUI never loads them
    assert len(low["frees"]) == 4 and all(device == torch.device("cpu") for _, device in low["frees"])
    assert all(need > mm.minimum_inference_memory() for need, _ in low["frees"])
    assert low["streamed"] == [True] * 3 and low["residents"] == [False] * 3  # residents parked after each node
    for mode in ("model_offload", "lowvram"):
        assert torch.equal(images[mode], images["auto"]), mode


COMFY_SCRIPT = textwrap.dedent('''
    import gc, importlib.util, os, sys
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options
    comfy.options.enable_args_parsing()
    import folder_paths, comfy.model_management as mm, comfy.utils, torch
    folder_paths.add_model_folder_path("kandinsky", os.environ["TINY_MODELS"])  # as extra_model_paths.yaml
    spec = importlib.util.spec_from_file_location("kandinsky_pack", os.path.join(os.environ["PACK"], "__init__.py"),
                                                  submodule_search_locations=[os.environ["PACK"]])
    pack = importlib.util.module_from_spec(spec); sys.modules["kandinsky_pack"] = pack; spec.loader.exec_module(pack)
    assert folder_paths.get_folder_paths("kandinsky")[-1] == os.path.join(folder_paths.models_dir, "kandinsky")
    N = pack.NODE_CLASS_MAPPINGS
    def call(node, **kw):
        node = node() if isinstance(node, type) else node
        return getattr(node, node.FUNCTION)(**kw)
    prior_loader, decoder_loader = N["KandinskyPriorLoader"](), N["KandinskyDecoderLoader"]()
    prior = call(prior_loader, prior_name=os.environ["PRIOR"], dtype="auto")[0]
    unet, movq = call(decoder_loader, decoder_name=os.environ["DECODER"], dtype="auto")
    steps = []
    cancel = {"at": None}
    def hook(value, total, preview, prompt_id=None, node_id=None):  # what the server installs
        steps.append((value, total))
        if (value, total) == cancel["at"]:  # Cancel pressed; the pack's own check must stop the run
            mm.interrupt_current_processing(True)
            return
        mm.throw_exception_if_processing_interrupted()
    comfy.utils.set_progress_bar_global_hook(hook)
    def bars(seen):  # the hook's calls split per progress bar. 0.3.64 calls it every step; 0.33 the first step,
        runs = []      # the last and at most one other per 100 ms, so a Cancel cannot rely on the hook
        for value, total in seen:
            if not runs or value <= runs[-1][-1][0] or total != runs[-1][-1][1]:
                runs.append([])
            runs[-1].append((value, total))
        return runs
    def run():
        e = call(N["KandinskyPriorEncode"], prior=prior, prompt="a cat", negative_prompt="", seed=1, steps=3,
                 guidance_scale=4.0, batch_size=1)[0]
        l = call(N["KandinskyUNetSampler"], unet=unet, embeds=e, latent={"samples": torch.zeros(1, 4, 8, 8)}, seed=2,
                 steps=4, guidance_scale=4.0, sampler="ddpm", denoise=1.0)[0]
        return call(N["KandinskyMoVQDecode"], movq=movq, latent=l)[0]
    first = run()
    prior_bar, sampler_bar, movq_bar = bars(steps)
    assert movq_bar[-1] == (3, 3), steps  # MoVQ decode reports its blocks
    assert prior_bar[0] == (1, 3) and prior_bar[-1] == (3, 3) and sampler_bar[0] == (1, 4), steps
    assert sampler_bar[-1] == (4, 4) and all(t == 4 for _, t in sampler_bar), steps
    loaded = [m.model.model.inner for m in mm.current_loaded_models]
    assert all(any(x is m for x in loaded) for m in prior.modules() + unet.modules() + movq.modules()), loaded
    cancel["at"] = (1, 4)  # during the sampler's first step: always sent to the hook, which does not raise
    del steps[:]
    try:
        run()
        raise SystemExit("Cancel did not stop the run")
    except mm.InterruptProcessingException:
        pass
    assert steps[-1] == (1, 4), steps  # stopped after that step
    cancel["at"] = None
    assert torch.equal(run(), first)
    old = unet.unet
    del unet, movq
    call(decoder_loader, decoder_name=os.environ["DECODER"], dtype="bf16")
    gc.collect()
    assert not any(m.model.model.inner is old for m in mm.current_loaded_models if m.model is not None)
    for mode in ("model_offload", "lowvram"):  # same image; none of the models left loaded after the run
        prior = call(N["KandinskyPriorLoader"](), prior_name=os.environ["PRIOR"], dtype="auto", memory_mode=mode)[0]
        unet, movq = call(N["KandinskyDecoderLoader"](), decoder_name=os.environ["DECODER"], dtype="auto",
                          memory_mode=mode)
        assert torch.equal(run(), first), mode
        ours = {id(m) for m in prior.modules() + unet.modules() + movq.modules()}
        assert not any(id(m.model.model.inner) in ours for m in mm.current_loaded_models if m.model is not None), mode
    print("COMFY_OK")
''')


def run_in_real_comfyui(script):
    comfy_path = os.environ.get("COMFYUI_PATH")
    if not comfy_path or not os.path.isfile(os.path.join(comfy_path, "comfy", "model_management.py")):
        pytest.skip("set COMFYUI_PATH to a ComfyUI checkout (with its requirements installed) to run this test")
    env = {**os.environ, "TINY_MODELS": str(tiny_model_dir()), "PACK": ROOT, "PRIOR": PRIOR, "DECODER": DECODER,
           "PYTHONPATH": os.pathsep.join([comfy_path, os.environ.get("PYTHONPATH", "")])}
    venv_python = os.path.join(comfy_path, ".venv", "bin", "python")  # as tests/test_comfyui_host.py picks it
    python = os.environ.get("COMFYUI_PYTHON") or (venv_python if os.path.exists(venv_python) else sys.executable)
    result = subprocess.run([python, "-c", script], cwd=comfy_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert "COMFY_OK" in result.stdout, result.stdout[-3000:] + result.stderr[-5000:]


def test_inside_real_comfyui():
    run_in_real_comfyui(COMFY_SCRIPT)


def test_auto_dtype_follows_real_comfyui_flags():
    head, tail = COMFY_SCRIPT.split("N = pack.NODE_CLASS_MAPPINGS")
    script = head.replace('"--cpu"]', '"--cpu", "--bf16-unet", "--fp16-vae"]') + textwrap.dedent('''
        N = pack.NODE_CLASS_MAPPINGS
        loader = N["KandinskyDecoderLoader"]()
        unet, movq = getattr(loader, loader.FUNCTION)(decoder_name=os.environ["DECODER"], dtype="auto")
        assert (unet.dtype, movq.dtype) == (torch.bfloat16, torch.float16), (unet.dtype, movq.dtype)
        print("COMFY_OK")
    ''')
    run_in_real_comfyui(script)
