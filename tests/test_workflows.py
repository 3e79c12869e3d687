"""The shipped workflows: UI files (workflows/*.json) and their API twins (workflows/api/*.json).

Checks that every file parses, that the files are what workflows/generate.py writes, that each UI workflow
and its API twin are the same graph (nodes, widget values, links), that every node type is ours or a
listed ComfyUI core node, that every input of our nodes is valid against INPUT_TYPES, and that every API
workflow runs end to end on tiny models with the core nodes replaced by direct tensor inputs.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
API_FILES = sorted((WORKFLOWS / "api").glob("*.json"))
NAMES = [p.stem for p in UI_FILES]

# ComfyUI core nodes the workflows may use: output types, and the widget inputs each takes.
CORE_OUTPUTS = {"LoadImage": ["IMAGE", "MASK"], "SaveImage": [], "PreviewImage": [], "EmptyLatentImage": ["LATENT"],
                "ImageScale": ["IMAGE"], "KSampler": ["LATENT"], "VAEDecode": ["IMAGE"], "VAEEncode": ["LATENT"],
                "VAEEncodeForInpaint": ["LATENT"], "SamplerCustomAdvanced": ["LATENT", "LATENT"],
                "RandomNoise": ["NOISE"], "CFGGuider": ["GUIDER"], "KSamplerSelect": ["SAMPLER"],
                "BasicScheduler": ["SIGMAS"]}
# ComfyUI's sampler / scheduler names the bridge workflows may use (all in 0.3.64 and 0.33)
SAMPLER_NAMES = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddim", "uni_pc", "lcm"]
SCHEDULER_NAMES = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]
CORE_INPUTS = {
    "LoadImage": {"image": str},
    "SaveImage": {"images": "IMAGE", "filename_prefix": str},
    "PreviewImage": {"images": "IMAGE"},
    "EmptyLatentImage": {"width": int, "height": int, "batch_size": int},
    "ImageScale": {"image": "IMAGE", "upscale_method": ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"],
                   "width": int, "height": int, "crop": ["disabled", "center"]},
    # ComfyUI's own sampling stack (the bridge workflows); these need ComfyUI to run (tests/test_comfyui_host.py)
    "KSampler": {"model": "MODEL", "seed": int, "steps": int, "cfg": float, "sampler_name": SAMPLER_NAMES,
                 "scheduler": SCHEDULER_NAMES, "positive": "CONDITIONING", "negative": "CONDITIONING",
                 "latent_image": "LATENT", "denoise": float},
    "VAEDecode": {"samples": "LATENT", "vae": "VAE"},
    "VAEEncode": {"pixels": "IMAGE", "vae": "VAE"},
    "VAEEncodeForInpaint": {"pixels": "IMAGE", "vae": "VAE", "mask": "MASK", "grow_mask_by": int},
    "SamplerCustomAdvanced": {"noise": "NOISE", "guider": "GUIDER", "sampler": "SAMPLER", "sigmas": "SIGMAS",
                              "latent_image": "LATENT"},
    "RandomNoise": {"noise_seed": int},
    "CFGGuider": {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING", "cfg": float},
    "KSamplerSelect": {"sampler_name": SAMPLER_NAMES},
    "BasicScheduler": {"model": "MODEL", "scheduler": SCHEDULER_NAMES, "steps": int, "denoise": float},
}
COMFY_SAMPLING = {"KSampler", "VAEDecode", "VAEEncode", "VAEEncodeForInpaint", "SamplerCustomAdvanced", "RandomNoise",
                  "CFGGuider", "KSamplerSelect", "BasicScheduler"}  # no CI stand-ins: these run on the real host
VIRTUAL = {"MarkdownNote", "Note"}  # editor-only nodes: in UI files, never in the API format
MODEL_INPUTS = ("prior_name", "decoder_name", "text_encoder_name", "depth_model_name")  # depend on installed models
MODEL_FOLDERS = {  # the folders the README's download commands create, and what each holds (a role and a version;
    # depth estimators are transformers folders, for any Kandinsky version)
    "kandinsky-2-2-prior": ("prior", "2.2"), "kandinsky-2-2-decoder": ("decoder", "2.2"),
    "kandinsky-2-2-decoder-inpaint": ("decoder", "2.2"), "kandinsky-2-2-controlnet-depth": ("decoder", "2.2"),
    "kandinsky-2-1-prior": ("prior", "2.1"), "kandinsky-2-1": ("decoder", "2.1"),
    "kandinsky-2-1-inpaint": ("decoder", "2.1"), "kandinsky-3": ("decoder", "3"),
    # choices inside the original ai-forever release folder (one per UNet, and its text encoder)
    "Kandinsky3.1 / inpainting": ("decoder", "3"), "Kandinsky3.1 / flash": ("decoder", "3"),
    "Kandinsky3.1 / flan_ul2_encoder": ("decoder", "3"),
    "dpt-hybrid-midas": ("depth", None), "Depth-Anything-V2-Small-hf": ("depth", None),
}
EXPECTED = {  # the tasks the issue asks for, by file name
    "kandinsky-2-2-text-to-image", "kandinsky-2-2-image-to-image", "kandinsky-2-2-inpaint",
    "kandinsky-2-2-interpolate", "kandinsky-2-2-emb2emb", "kandinsky-2-2-depth-text-to-image",
    "kandinsky-2-2-depth-image-to-image", "kandinsky-2-1-text-to-image", "kandinsky-2-1-image-to-image",
    "kandinsky-2-1-inpaint", "kandinsky-2-1-interpolate", "kandinsky-3-text-to-image", "kandinsky-3-image-to-image",
    "kandinsky-3-1-inpaint", "kandinsky-3-1-flash",
    "kandinsky-2-2-ksampler-text-to-image", "kandinsky-2-2-ksampler-image-to-image", "kandinsky-2-2-ksampler-inpaint",
    "kandinsky-2-2-custom-sampler-karras", "kandinsky-3-ksampler-text-to-image",
}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def generator_module():
    name = "kandinsky_workflow_generator"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, WORKFLOWS / "generate.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def input_spec(pack, class_type: str) -> dict:
    spec = pack.NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
    return {name: (section, kind, opts[0] if opts else {})
            for section in ("required", "optional") for name, (kind, *opts) in spec.get(section, {}).items()}


def output_types(pack, class_type: str) -> list[str]:
    if class_type in CORE_OUTPUTS:
        return CORE_OUTPUTS[class_type]
    return list(pack.NODE_CLASS_MAPPINGS[class_type].RETURN_TYPES)


def has_seed_control(kind, opts: dict, name: str) -> bool:
    """The frontend puts a control_after_generate value after these INT widgets in widgets_values."""
    return kind == "INT" and (bool(opts.get("control_after_generate")) or name in ("seed", "noise_seed"))


def ui_to_api(pack, ui: dict) -> dict:
    """The API prompt a UI workflow stands for, derived independently of workflows/generate.py: widget
    values by the node's widget inputs (skipping seed control values and LoadImage's upload button), links
    by the links table."""
    prompt = {}
    links = {link[0]: link for link in ui["links"]}
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL:
            continue
        specs = input_spec(pack, node["type"]) if node["type"] in pack.NODE_CLASS_MAPPINGS else {}
        values = list(node.get("widgets_values", []))
        inputs = {}
        for slot in node["inputs"]:
            if "widget" in slot:
                value = values.pop(0)
                _, kind, opts = specs.get(slot["name"], (None, slot["type"], {}))
                if has_seed_control(kind, opts, slot["name"]):
                    assert values.pop(0) in ("fixed", "increment", "decrement", "randomize")
                if slot["name"] != "upload" and slot["link"] is None:
                    inputs[slot["name"]] = value
        assert not values, f"node {node['id']} ({node['type']}) has more widget values than widget inputs"
        for index, slot in enumerate(node["inputs"]):
            if slot["link"] is not None:
                _, source, out, target, target_slot, _ = links[slot["link"]]
                assert (target, target_slot) == (node["id"], index), f"link {slot['link']} does not end at this slot"
                inputs[slot["name"]] = [str(source), out]
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                   "_meta": {"title": node.get("title", node["type"])}}
    return prompt


# --- files --------------------------------------------------------------------------------------------

def test_every_task_has_a_ui_workflow_and_an_api_twin():
    assert set(NAMES) == EXPECTED
    assert [p.stem for p in API_FILES] == NAMES


@pytest.mark.parametrize("path", UI_FILES + API_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_workflow_file_parses(path):
    data = load(path)
    if path.parent.name == "api":
        assert data and all(set(node) == {"inputs", "class_type", "_meta"} for node in data.values())
    else:
        assert data["version"] == 0.4 and {"nodes", "links", "groups", "config", "extra"} <= set(data)
        assert data["last_node_id"] == max(n["id"] for n in data["nodes"])
        assert data["last_link_id"] == max((link[0] for link in data["links"]), default=0)


def test_files_are_what_generate_py_writes(pack):
    files = generator_module().render()
    stale = [str(p.relative_to(ROOT)) for p, text in files.items() if not p.is_file() or p.read_text() != text]
    assert not stale, f"run `python workflows/generate.py` and commit: {stale}"
    assert set(files) == set(UI_FILES) | set(API_FILES)


# --- the graph ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_and_api_twin_are_the_same_graph(pack, name):
    ui = load(WORKFLOWS / f"{name}.json")
    api = load(WORKFLOWS / "api" / f"{name}.json")
    derived = ui_to_api(pack, ui)
    assert derived.keys() == api.keys()
    for node_id, node in api.items():
        assert node["class_type"] == derived[node_id]["class_type"]
        assert node["inputs"] == derived[node_id]["inputs"], f"node {node_id} ({node['class_type']})"
        assert node["_meta"]["title"] == derived[node_id]["_meta"]["title"]
    # links: both ends exist, and the link's type is the source output's and the target input's type
    nodes = {n["id"]: n for n in ui["nodes"]}
    for link_id, source, out, target, slot, kind in ui["links"]:
        assert link_id in (nodes[source]["outputs"][out]["links"] or [])
        assert nodes[target]["inputs"][slot]["link"] == link_id
        assert kind == nodes[source]["outputs"][out]["type"] == nodes[target]["inputs"][slot]["type"]
        assert kind == output_types(pack, nodes[source]["type"])[out]


@pytest.mark.parametrize("name", NAMES)
def test_every_node_is_ours_or_a_listed_core_node(pack, name):
    ui_types = {n["type"] for n in load(WORKFLOWS / f"{name}.json")["nodes"]}
    api_types = {n["class_type"] for n in load(WORKFLOWS / "api" / f"{name}.json").values()}
    allowed = set(pack.NODE_CLASS_MAPPINGS) | set(CORE_INPUTS)
    assert api_types <= allowed, api_types - allowed
    assert ui_types <= allowed | VIRTUAL, ui_types - allowed - VIRTUAL
    assert ui_types & VIRTUAL, "each workflow explains itself in a note"
    assert "SaveImage" in api_types


def check_value(where: str, name: str, kind, opts: dict, value) -> None:
    if isinstance(kind, list):
        if name in MODEL_INPUTS:
            assert value in MODEL_FOLDERS, f"{where}: {name}={value!r} is not a README download folder"
        else:
            assert value in kind, f"{where}: {name}={value!r} not in {kind}"
    elif kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {name}={value!r} is not an INT"
        assert opts.get("min", value) <= value <= opts.get("max", value), f"{where}: {name}={value} out of range"
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {name} is not a FLOAT"
        assert opts.get("min", value) <= value <= opts.get("max", value), f"{where}: {name}={value} out of range"
    elif kind == "STRING":
        assert isinstance(value, str), f"{where}: {name} is not a STRING"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), f"{where}: {name} is not a BOOLEAN"
    else:
        raise AssertionError(f"{where}: {name} is a {kind} socket but holds a value {value!r}")


@pytest.mark.parametrize("name", NAMES)
def test_every_input_is_valid_against_input_types(pack, name):
    api = load(WORKFLOWS / "api" / f"{name}.json")
    for node_id, node in api.items():
        where = f"{name} node {node_id} ({node['class_type']})"
        inputs = node["inputs"]
        if node["class_type"] in CORE_INPUTS:
            expected = CORE_INPUTS[node["class_type"]]
            assert set(inputs) == set(expected), where
            for key, kind in expected.items():
                if isinstance(inputs[key], list) and isinstance(kind, str):  # a link to a socket of type `kind`
                    assert output_types(pack, api[inputs[key][0]]["class_type"])[inputs[key][1]] == kind, where
                elif isinstance(kind, list):
                    assert inputs[key] in kind, where
                else:
                    assert isinstance(inputs[key], kind) and not isinstance(inputs[key], bool), where
            continue
        spec = input_spec(pack, node["class_type"])
        unknown = set(inputs) - set(spec)
        assert not unknown, f"{where}: unknown inputs {unknown}"
        missing = {k for k, (section, _, _) in spec.items() if section == "required"} - set(inputs)
        assert not missing, f"{where}: missing required inputs {missing}"
        for key, value in inputs.items():
            _, kind, opts = spec[key]
            if isinstance(value, list):  # a link [source id, output index]
                source = api[value[0]]
                got = output_types(pack, source["class_type"])[value[1]]
                assert got == kind, f"{where}: {key} expects {kind}, gets {got} from node {value[0]}"
            else:
                check_value(where, key, kind, opts, value)
        if node["class_type"] == "KandinskyInterpolate":
            for key in inputs:
                if key.startswith("embeds_"):
                    assert f"weight_{key[7:]}" in inputs, f"{where}: {key} without its weight"


def test_model_folders_match_the_loaders_and_the_task(pack):
    for name in NAMES:
        api = load(WORKFLOWS / "api" / f"{name}.json")
        version = "2.1" if name.startswith("kandinsky-2-1") else "3" if name.startswith("kandinsky-3") else "2.2"
        for node in api.values():
            # the Kandinsky 3 text encoder is read from the kandinsky-3 (decoder) folder
            for key, role in (("prior_name", "prior"), ("decoder_name", "decoder"), ("text_encoder_name", "decoder")):
                if key in node["inputs"]:
                    assert MODEL_FOLDERS[node["inputs"][key]] == (role, version), f"{name}: {node['inputs'][key]}"
            if "depth_model_name" in node["inputs"]:
                assert MODEL_FOLDERS[node["inputs"]["depth_model_name"]][0] == "depth", name
        decoders = {n["inputs"]["decoder_name"] for n in api.values() if "decoder_name" in n["inputs"]}
        if "inpaint" in name:
            assert all("inpaint" in d for d in decoders), name
        elif "depth" in name:
            assert decoders == {"kandinsky-2-2-controlnet-depth"}, name
            assert {n["class_type"] for n in api.values()} >= {"KandinskyDepthModelLoader", "KandinskyDepthEstimate"}
        else:
            assert not any("inpaint" in d or "depth" in d for d in decoders), name


# --- running the API workflows on tiny models -----------------------------------------------------------

MIN_STEPS = 2  # the prior's minimum; the decoder's `steps` is raised so that floor(steps x denoise) >= 1
TINY_LATENT = 8  # latent side for the tiny UNets (MoVQ scale factor 2, depth repo 8)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """KANDINSKY_MODEL_DIR roots holding tiny repos under the README's folder names (2.1 when buildable)."""
    from tiny_models.node_repos import tiny_model_dir

    roots = [tiny_model_dir()]
    reason = None
    if importlib.util.find_spec("tiny_models.repos21") is None:
        reason = "tests/tiny_models/repos21.py (the tiny Kandinsky 2.1 repos) is not in this checkout"
    else:
        from tiny_models.repos21 import build_decoder21_repo, build_prior21_repo

        root = tmp_path_factory.mktemp("kandinsky21")
        models = root / "models"
        models.mkdir()
        for folder, build in (("kandinsky-2-1-prior", lambda p: build_prior21_repo(p)),
                              ("kandinsky-2-1", lambda p: build_decoder21_repo(p, "decoder21")),
                              ("kandinsky-2-1-inpaint", lambda p: build_decoder21_repo(p, "inpaint21"))):
            torch.manual_seed(0)
            shutil.move(str(build(root / "build" / folder)), str(models / folder))
        roots.append(models)
    from tiny_models.k3_original_release import build_original_release

    roots.append(build_original_release(tmp_path_factory.mktemp("k31")).parent)  # Kandinsky3.1 (original layout)
    return roots, reason


class CoreStandIns:
    """Direct tensor stand-ins for the ComfyUI core nodes, sized for the tiny models."""

    def __init__(self, scale_factor: int) -> None:
        self.image_side = TINY_LATENT * scale_factor  # what MoVQEncode needs for a TINY_LATENT latent
        self.saved: list[torch.Tensor] = []
        self.previews: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(0)

    def LoadImage(self, image):
        rgb = torch.rand(1, 20, 28, 3, generator=self.generator)
        mask = torch.zeros(1, 20, 28)
        mask[:, 4:12, 8:20] = 1.0  # 1 = repaint, as LoadImage's alpha-derived MASK
        return rgb, mask

    def ImageScale(self, image, upscale_method, width, height, crop):
        side = self.image_side  # the workflow's 768 px, scaled down for the tiny MoVQ
        resized = torch.nn.functional.interpolate(image.movedim(-1, 1), size=(side, side), mode="bilinear")
        return (resized.movedim(1, -1).clamp(0, 1),)

    def EmptyLatentImage(self, width, height, batch_size):
        return ({"samples": torch.zeros(batch_size, 4, TINY_LATENT, TINY_LATENT)},)

    def SaveImage(self, images, filename_prefix):
        self.saved.append(images)
        return ()

    def PreviewImage(self, images):
        self.previews.append(images)
        return ()


def run_api_workflow(pack, api: dict, core: CoreStandIns) -> None:
    """Execute an API prompt in dependency order, as ComfyUI's executor would, one node instance each."""
    outputs: dict[str, tuple] = {}

    def run(node_id: str) -> tuple:
        if node_id not in outputs:
            node = api[node_id]
            kwargs = {k: (run(v[0])[v[1]] if isinstance(v, list) else v) for k, v in node["inputs"].items()}
            if node["class_type"] in CORE_INPUTS:
                outputs[node_id] = getattr(core, node["class_type"])(**kwargs)
            else:
                instance = pack.NODE_CLASS_MAPPINGS[node["class_type"]]()
                outputs[node_id] = getattr(instance, instance.FUNCTION)(**kwargs)
        return outputs[node_id]

    for node_id in api:
        run(node_id)


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs_end_to_end_on_tiny_models(pack, model_dirs, monkeypatch, name):
    roots, reason_21 = model_dirs
    if name.startswith("kandinsky-2-1") and reason_21:
        pytest.skip(reason_21)
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", os.pathsep.join(str(r) for r in roots))
    api = load(WORKFLOWS / "api" / f"{name}.json")
    stock = sorted({n["class_type"] for n in api.values()} & COMFY_SAMPLING)
    if stock:
        pytest.skip(f"uses ComfyUI's sampling nodes {stock}: runs on a real host (tests/test_comfyui_host.py)")
    for node in api.values():
        if "steps" in node["inputs"]:
            fraction = node["inputs"].get("denoise", node["inputs"].get("strength", 1.0))
            node["inputs"]["steps"] = max(MIN_STEPS, math.ceil(1 / fraction))
    depth = any(n["inputs"].get("decoder_name") == "kandinsky-2-2-controlnet-depth" for n in api.values())
    original = name.startswith("kandinsky-3-1")  # the tiny original release's MoVQ has 4 levels, as the real one
    core = CoreStandIns(scale_factor=8 if depth or original else 2)
    run_api_workflow(pack, api, core)

    assert len(core.saved) == 1
    image = core.saved[0]
    side = TINY_LATENT * (8 if depth or original else 2)
    assert image.shape == (1, side, side, 3)
    assert torch.isfinite(image).all() and 0 <= image.min() and image.max() <= 1
    assert image.std() > 0  # a real decoded image, not a constant
    if "depth" in name:
        assert len(core.previews) == 1  # the depth map preview
