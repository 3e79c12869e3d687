"""Writes every workflow of this folder: the UI format (workflows/*.json, what the ComfyUI editor saves
and its templates browser lists) and the API format (workflows/api/*.json, what POST /prompt takes),
both from the graphs defined below, so the two stay the same graph.

    python workflows/generate.py           # rewrite the JSON files
    python workflows/generate.py --check   # exit 1 if a committed file differs (tests/test_workflows.py)

Inputs, widgets and outputs of our nodes come from their INPUT_TYPES / RETURN_TYPES, laid out the way
ComfyUI frontend 1.27 does it (sockets first, then one input per widget; a seed widget is followed by
its control_after_generate value; KandinskyInterpolate shows the pairs in use plus one spare, as the web
extension does). The ComfyUI core nodes used here are described in CORE_NODES.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import thumbnails  # noqa: E402 (beside this file)
from thumbnails import INPAINT_EXAMPLE  # noqa: E402
FRONTEND_VERSION = "1.27.10"  # the frontend of ComfyUI 0.3.64, whose save format these files follow
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
OPTIONAL_SHAPE = 7  # LiteGraph RenderShape.HollowCircle: how the frontend marks optional inputs
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
GROUP_COLOR = "#3f789e"

MODELS = {  # loader widget values: the folders the README's `hf download` commands create
    "prior22": "kandinsky-2-2-prior",
    "decoder22": "kandinsky-2-2-decoder",
    "inpaint22": "kandinsky-2-2-decoder-inpaint",
    "depth22": "kandinsky-2-2-controlnet-depth",
    "prior21": "kandinsky-2-1-prior",
    "decoder21": "kandinsky-2-1",
    "inpaint21": "kandinsky-2-1-inpaint",
    "k3": "kandinsky-3",
    "k31": "Kandinsky3.1",  # the original ai-forever release (weights/*.pt), see docs/KANDINSKY_3_ORIGINALS.md
    "dpt": "dpt-hybrid-midas",  # the depth estimator of diffusers' depth ControlNet examples
}
HUB_OWNER = {"k31": "ai-forever", "dpt": "Intel"}  # kandinsky-community otherwise

# ComfyUI core nodes (0.3.64) used by the workflows: display name, inputs as (name, type, optional),
# widget specs ("COMBO" for combos; LoadImage's upload button is a widget input that sends nothing),
# outputs as (name, type).
CORE_NODES = {
    "LoadImage": {
        "title": "Load Image",
        "inputs": [("image", "COMBO", False), ("upload", "IMAGEUPLOAD", False)],
        "api_skip": {"upload"},
        "outputs": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
    },
    "SaveImage": {
        "title": "Save Image",
        "inputs": [("images", "IMAGE", False), ("filename_prefix", "STRING", False)],
        "outputs": [],
    },
    "PreviewImage": {"title": "Preview Image", "inputs": [("images", "IMAGE", False)], "outputs": []},
    "EmptyLatentImage": {
        "title": "Empty Latent Image",
        "inputs": [("width", "INT", False), ("height", "INT", False), ("batch_size", "INT", False)],
        "outputs": [("LATENT", "LATENT")],
    },
    "ImageScale": {
        "title": "Upscale Image",
        "inputs": [("image", "IMAGE", False), ("upscale_method", "COMBO", False), ("width", "INT", False),
                   ("height", "INT", False), ("crop", "COMBO", False)],
        "outputs": [("IMAGE", "IMAGE")],
    },
    # ComfyUI's own sampling stack, for the bridge workflows (KandinskyUNetToModel / Conditioning / MoVQToVAE)
    "KSampler": {
        "title": "KSampler",
        "inputs": [("model", "MODEL", False), ("seed", "INT", False), ("steps", "INT", False), ("cfg", "FLOAT", False),
                   ("sampler_name", "COMBO", False), ("scheduler", "COMBO", False), ("positive", "CONDITIONING", False),
                   ("negative", "CONDITIONING", False), ("latent_image", "LATENT", False), ("denoise", "FLOAT", False)],
        "outputs": [("LATENT", "LATENT")],
    },
    "VAEDecode": {"title": "VAE Decode", "inputs": [("samples", "LATENT", False), ("vae", "VAE", False)],
                  "outputs": [("IMAGE", "IMAGE")]},
    "VAEEncode": {"title": "VAE Encode", "inputs": [("pixels", "IMAGE", False), ("vae", "VAE", False)],
                  "outputs": [("LATENT", "LATENT")]},
    "VAEEncodeForInpaint": {
        "title": "VAE Encode (for Inpainting)",
        "inputs": [("pixels", "IMAGE", False), ("vae", "VAE", False), ("mask", "MASK", False),
                   ("grow_mask_by", "INT", False)],
        "outputs": [("LATENT", "LATENT")],
    },
    "SamplerCustomAdvanced": {
        "title": "SamplerCustomAdvanced",
        "inputs": [("noise", "NOISE", False), ("guider", "GUIDER", False), ("sampler", "SAMPLER", False),
                   ("sigmas", "SIGMAS", False), ("latent_image", "LATENT", False)],
        "outputs": [("output", "LATENT"), ("denoised_output", "LATENT")],
    },
    "RandomNoise": {"title": "RandomNoise", "inputs": [("noise_seed", "INT", False)], "outputs": [("NOISE", "NOISE")]},
    "CFGGuider": {
        "title": "CFGGuider",
        "inputs": [("model", "MODEL", False), ("positive", "CONDITIONING", False), ("negative", "CONDITIONING", False),
                   ("cfg", "FLOAT", False)],
        "outputs": [("GUIDER", "GUIDER")],
    },
    "KSamplerSelect": {"title": "KSamplerSelect", "inputs": [("sampler_name", "COMBO", False)],
                       "outputs": [("SAMPLER", "SAMPLER")]},
    "BasicScheduler": {
        "title": "BasicScheduler",
        "inputs": [("model", "MODEL", False), ("scheduler", "COMBO", False), ("steps", "INT", False),
                   ("denoise", "FLOAT", False)],
        "outputs": [("SIGMAS", "SIGMAS")],
    },
}
SEED_WIDGETS = ("seed", "noise_seed")  # INT widgets the frontend follows with a control_after_generate value
WIDGET_INPUT_TYPES = WIDGET_TYPES + ("COMBO", "IMAGEUPLOAD")
VIRTUAL_NODES = ("MarkdownNote", "Note")  # editor-only: never sent to the server
CORE_NODE_TYPES = tuple(CORE_NODES) + VIRTUAL_NODES


def load_pack():
    """The node pack imported as the package `kandinsky_pack` (as tests/conftest.py does)."""
    if "kandinsky_pack" in sys.modules:
        return sys.modules["kandinsky_pack"]
    spec = importlib.util.spec_from_file_location("kandinsky_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["kandinsky_pack"] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Slot:
    name: str
    type: str
    optional: bool = False
    widget: bool = False  # a widget input (its value sits in widgets_values unless linked)
    api: bool = True  # sent in the API format (LoadImage's upload button is not)


@dataclass
class NodeSpec:
    title: str
    inputs: list[Slot]  # in the frontend's order: sockets first, then widget inputs
    widgets: list[str]  # widget names in widgets_values order ("control_after_generate" after a seed)
    outputs: list[tuple[str, str]]
    defaults: dict = field(default_factory=dict)  # optional widget -> its default, used when a graph gives none


def _is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def node_spec(node_type: str, pairs: int = 2) -> NodeSpec:
    """Inputs, widgets and outputs of a node as the frontend lays them out."""
    if node_type in VIRTUAL_NODES:
        return NodeSpec(node_type, [], ["text"], [])
    if node_type in CORE_NODES:
        core = CORE_NODES[node_type]
        slots = [Slot(n, t, o, t in WIDGET_INPUT_TYPES, n not in core.get("api_skip", ())) for n, t, o in core["inputs"]]
        widgets = []
        for slot in (s for s in slots if s.widget):
            widgets += [slot.name, "control_after_generate"] if slot.name in SEED_WIDGETS else [slot.name]
        return NodeSpec(core["title"], [s for s in slots if not s.widget] + [s for s in slots if s.widget],
                        widgets, list(core["outputs"]))
    pack = load_pack()
    cls = pack.NODE_CLASS_MAPPINGS[node_type]
    spec = cls.INPUT_TYPES()
    entries = [(name, kind, opts[0] if opts else {}, section == "optional")
               for section in ("required", "optional")
               for name, (kind, *opts) in spec.get(section, {}).items()]
    if node_type == "KandinskyInterpolate":  # the web extension shows `pairs` pairs, appended at the end
        order = ["embeds_1", "embeds_2", "weight_1", "weight_2"]
        order += [f"{kind}_{i}" for i in range(3, pairs + 1) for kind in ("embeds", "weight")]
        by_name = {e[0]: e for e in entries}
        entries = [by_name[name] for name in order]
        slots = [Slot(n, "COMBO" if isinstance(k, list) else k, o, _is_widget(k)) for n, k, _, o in entries]
    else:
        sockets = [Slot(n, k, o) for n, k, _, o in entries if not _is_widget(k)]
        widget_slots = [Slot(n, "COMBO" if isinstance(k, list) else k, o, True) for n, k, _, o in entries if _is_widget(k)]
        slots = sockets + widget_slots
    widgets = []
    for name, kind, opts, _ in entries:
        if not _is_widget(kind) or not any(s.name == name for s in slots):
            continue
        widgets.append(name)
        if kind == "INT" and (opts.get("control_after_generate") or name in SEED_WIDGETS):
            widgets.append("control_after_generate")
    if node_type == "KandinskyInterpolate":
        widgets = [f"weight_{i}" for i in range(1, pairs + 1)]  # widgets_values follow the pair order
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    defaults = {name: opts["default"] for name, kind, opts, optional in entries
                if optional and _is_widget(kind) and "default" in opts}
    return NodeSpec(pack.NODE_DISPLAY_NAME_MAPPINGS.get(node_type, node_type), slots, widgets,
                    list(zip(names, cls.RETURN_TYPES)), defaults)


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[float, float]
    size: tuple[float, float]
    values: dict  # widget name -> value
    title: str | None = None
    links: dict = field(default_factory=dict)  # input name -> (source Node, output index)
    color: str | None = None
    bgcolor: str | None = None

    def out(self, index: int = 0) -> tuple["Node", int]:
        return (self, index)


class Graph:
    """A workflow being built: nodes, their links, groups; renders to the UI and API formats."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[Node] = []
        self.groups: list[tuple[str, tuple[float, float, float, float]]] = []

    def add(self, node_type: str, pos, size, title: str | None = None, links: dict | None = None, **values) -> Node:
        node = Node(len(self.nodes) + 1, node_type, pos, size, values, title, dict(links or {}))
        self.nodes.append(node)
        return node

    def note(self, pos, size, title: str, text: str) -> Node:
        node = self.add("MarkdownNote", pos, size, title, text=text)
        node.color, node.bgcolor = NOTE_COLOR, NOTE_BGCOLOR
        return node

    def group(self, title: str, bounding) -> None:
        self.groups.append((title, bounding))

    # --- layout helpers -----------------------------------------------------------------------------

    def _pairs(self, node: Node) -> int:
        """Pairs a KandinskyInterpolate shows: up to the last linked one plus a spare (web/interpolate_logic.js)."""
        if node.type != "KandinskyInterpolate":
            return 2
        last = max((int(name.rsplit("_", 1)[1]) for name in node.links), default=0)
        return min(8, last + 1 if last >= 2 else 2)

    def spec(self, node: Node) -> NodeSpec:
        return node_spec(node.type, self._pairs(node))

    def _widget_values(self, node: Node, spec: NodeSpec) -> list:
        values = []
        for name in spec.widgets:
            if name == "control_after_generate":  # the seed widget's companion; not sent to the server
                values.append(node.values.get(name, "fixed"))
            elif name not in node.values and name in spec.defaults:  # an optional widget the graph leaves as is
                values.append(spec.defaults[name])
            else:
                if name not in node.values:
                    raise KeyError(f"{self.name}: node {node.id} ({node.type}) has no value for widget {name!r}")
                values.append(node.values[name])
        extra = set(node.values) - set(spec.widgets)
        if extra:
            raise KeyError(f"{self.name}: node {node.id} ({node.type}) has values for unknown widgets {sorted(extra)}")
        return values

    def _order(self) -> list[Node]:
        """Nodes in execution order (sources first), as the frontend numbers them."""
        done: list[Node] = []

        def visit(node: Node) -> None:
            if node in done:
                return
            for source, _ in node.links.values():
                visit(source)
            done.append(node)

        for node in sorted(self.nodes, key=lambda n: (bool(n.links), n.id)):
            visit(node)
        return done

    def _link_table(self) -> list[tuple[int, Node, int, Node, int, str]]:
        """(link id, source, output index, target, input index, type) in target node id / input order."""
        table = []
        for node in self.nodes:
            spec = self.spec(node)
            for index, slot in enumerate(spec.inputs):
                if slot.name in node.links:
                    source, out = node.links[slot.name]
                    table.append((len(table) + 1, source, out, node, index, self.spec(source).outputs[out][1]))
            unknown = set(node.links) - {s.name for s in spec.inputs}
            if unknown:
                raise KeyError(f"{self.name}: node {node.id} ({node.type}) has no inputs {sorted(unknown)}")
        return table

    # --- renderers ------------------------------------------------------------------------------------

    def ui(self) -> dict:
        links = self._link_table()
        order = {node.id: i for i, node in enumerate(self._order())}
        nodes = []
        for node in self.nodes:
            spec = self.spec(node)
            inputs = []
            for index, slot in enumerate(spec.inputs):
                entry = {"localized_name": "choose file to upload" if slot.type == "IMAGEUPLOAD" else slot.name,
                         "name": slot.name}
                if slot.optional:
                    entry["shape"] = OPTIONAL_SHAPE
                entry["type"] = slot.type
                if slot.widget:
                    entry["widget"] = {"name": slot.name}
                entry["link"] = next((lid for lid, _, _, t, i, _ in links if t is node and i == index), None)
                inputs.append(entry)
            outputs = []
            for index, (name, kind) in enumerate(spec.outputs):
                ids = [lid for lid, s, o, _, _, _ in links if s is node and o == index]
                outputs.append({"localized_name": name, "name": name, "type": kind, "links": ids or None})
            item = {"id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                    "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs}
            if node.title:
                item["title"] = node.title
            item["properties"] = {} if node.type in VIRTUAL_NODES else {"Node name for S&R": node.type}
            item["widgets_values"] = self._widget_values(node, spec)  # [] for no widgets, as a re-saved graph has
            if node.color:
                item["color"], item["bgcolor"] = node.color, node.bgcolor
            nodes.append(item)
        groups = [{"id": i + 1, "title": title, "bounding": list(box), "color": GROUP_COLOR, "font_size": 24,
                   "flags": {}} for i, (title, box) in enumerate(self.groups)]
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-kandinsky/workflows/{self.name}")),
            "revision": 0,
            "last_node_id": max(n.id for n in self.nodes),
            "last_link_id": len(links),
            "nodes": nodes,
            "links": [[lid, s.id, o, t.id, i, kind] for lid, s, o, t, i, kind in links],
            "groups": groups,
            "config": {},
            "extra": {"ds": {"scale": 0.75, "offset": [40, 40]}, "frontendVersion": FRONTEND_VERSION},
            "version": 0.4,
        }

    def api(self) -> dict:
        """The API format, as the frontend's Export (API): widget values, then links, in execution order."""
        prompt = {}
        for node in self._order():
            if node.type in VIRTUAL_NODES:
                continue
            spec = self.spec(node)
            values = dict(zip(spec.widgets, self._widget_values(node, spec)))
            api_names = {s.name for s in spec.inputs if s.api}
            inputs = {k: v for k, v in values.items() if k in api_names and k not in node.links}
            for slot in spec.inputs:
                if slot.name in node.links:
                    source, out = node.links[slot.name]
                    inputs[slot.name] = [str(source.id), out]
            prompt[str(node.id)] = {"inputs": inputs, "class_type": node.type,
                                    "_meta": {"title": node.title or spec.title}}
        return prompt


# --- the workflows ----------------------------------------------------------------------------------

NEGATIVE = "low quality, bad quality"
DEPTH_NEGATIVE = ("lowres, text, error, cropped, worst quality, low quality, jpeg artifacts, ugly, duplicate, "
                  "morbid, mutilated, out of frame, blurry, bad anatomy, bad proportions, watermark, signature")
MODEL_NOTE = (
    "## Models\n\nDownload the repos in diffusers layout into `ComfyUI/models/kandinsky/` (see the README):\n\n"
    "```\n{commands}\n```\n\nThe loaders list every Kandinsky repo folder found there (and in `kandinsky:` "
    "entries of `extra_model_paths.yaml`)."
)


def _download(*keys: str) -> str:
    return "\n".join(f"hf download {HUB_OWNER.get(k, 'kandinsky-community')}/{MODELS[k]} --local-dir "
                     f"models/kandinsky/{MODELS[k]}" for k in keys)


SIZES = {  # node sizes close to what the frontend computes, with room for the image previews
    "KandinskyPriorLoader": (320, 106), "KandinskyDecoderLoader": (320, 126), "KandinskyPriorEncode": (400, 270),
    "KandinskyImageEmbed": (240, 46), "KandinskyInterpolate": (300, 150), "KandinskyPriorEmb2Emb": (400, 290),
    "KandinskyDepthHint": (220, 26), "KandinskyMaskInvert": (220, 26), "KandinskyMoVQEncode": (220, 90),
    "KandinskyUNetSampler": (300, 238), "KandinskyMoVQDecode": (220, 70), "LoadImage": (320, 340),
    "SaveImage": (420, 460), "PreviewImage": (300, 300), "EmptyLatentImage": (300, 106), "ImageScale": (300, 130),
    "KandinskyTextEncoderLoader": (320, 106), "KandinskyTextEncode": (400, 200),
    "KandinskyUNetToModel": (240, 26), "KandinskyConditioning": (240, 66), "KandinskyMoVQToVAE": (240, 26),
    "KSampler": (300, 262), "VAEDecode": (210, 46), "VAEEncode": (210, 46), "VAEEncodeForInpaint": (260, 98),
    "SamplerCustomAdvanced": (280, 126), "RandomNoise": (300, 82), "CFGGuider": (260, 98),
    "KSamplerSelect": (300, 58), "BasicScheduler": (300, 106),
    "KandinskyDepthModelLoader": (320, 58), "KandinskyDepthEstimate": (240, 46),
}


# Columns of the layout: notes | loaders and input images | prior and latent prep | decoder | output.
X_NOTES, X_LOAD, X_PREP, X_DECODE, X_SAVE = 0, 440, 800, 1250, 1590
Y_DECODER_LOADER, Y_IMAGES, Y_IMAGE_STEP = 140, 300, 380  # below the prior loader, LoadImage nodes stacked


def _node(g: Graph, node_type: str, pos, title: str, links=None, **values) -> Node:
    return g.add(node_type, pos, SIZES[node_type], title, links, **values)


def _prior(g: Graph, version: str) -> Node:
    return _node(g, "KandinskyPriorLoader", (X_LOAD, 0), f"Load prior (Kandinsky {version})",
                 prior_name=MODELS["prior22" if version == "2.2" else "prior21"], dtype="auto", memory_mode="auto")


def _text(g: Graph, prior: Node, prompt: str, negative: str = NEGATIVE, seed: int = 42) -> Node:
    return _node(g, "KandinskyPriorEncode", (X_PREP, 0), "Prior: text to embeds", {"prior": prior.out()},
                 prompt=prompt, negative_prompt=negative, seed=seed, steps=25, guidance_scale=4.0, batch_size=1)


def _decoder(g: Graph, model: str) -> Node:
    version = "2.1" if model.endswith("21") else "2.2"
    kind = {"decoder": "", "inpaint": " inpainting", "depth": " depth ControlNet"}[model[:-2]]
    return _node(g, "KandinskyDecoderLoader", (X_LOAD, Y_DECODER_LOADER), f"Load decoder (Kandinsky {version}{kind})",
                 decoder_name=MODELS[model], dtype="auto", memory_mode="auto")


def _sample_and_save(g: Graph, decoder: Node, embeds: Node, latent: Node, prefix: str, *, steps: int = 50,
                     sampler: str = "ddpm", denoise: float = 1.0, hint: Node | None = None, seed: int = 42,
                     guidance_scale: float = 4.0) -> Node:
    links = {"unet": decoder.out(0), "embeds": embeds.out(), "latent": latent.out()}
    if hint is not None:
        links["hint"] = hint.out()
    sampled = _node(g, "KandinskyUNetSampler", (X_DECODE, 0), "Decoder: sample latent", links, seed=seed,
                    steps=steps, guidance_scale=guidance_scale, sampler=sampler, denoise=denoise)
    image = _node(g, "KandinskyMoVQDecode", (X_DECODE, 300), "MoVQ: latent to image",
                  {"movq": decoder.out(1), "latent": sampled.out()}, tile_size=0)
    return _node(g, "SaveImage", (X_SAVE, 0), "Save image", {"images": image.out()}, filename_prefix=prefix)


def _empty_latent(g: Graph, y: int, size: int) -> Node:
    return _node(g, "EmptyLatentImage", (X_PREP, y), "Image size (empty latent)", width=size, height=size,
                 batch_size=1)


def _load_image(g: Graph, row: int, title: str, image: str = "example.png") -> Node:
    return _node(g, "LoadImage", (X_LOAD, Y_IMAGES + row * Y_IMAGE_STEP), title, image=image, upload="image")


def _scale(g: Graph, image: Node, y: int, size: int, crop: str = "center") -> Node:
    return _node(g, "ImageScale", (X_PREP, y), "Resize input image", {"image": image.out()}, upscale_method="bicubic",
                 width=size, height=size, crop=crop)


def _common_notes(g: Graph, what: str, downloads: tuple[str, ...]) -> None:
    g.note((X_NOTES, 0), (400, 330), "About this workflow", what)
    g.note((X_NOTES, 370), (400, 300), "Models", MODEL_NOTE.format(commands=_download(*downloads)))


def _v(version: str) -> tuple[str, bool]:
    """File-name form of a version ("2-2") and whether it is 2.1."""
    return version.replace(".", "-"), version == "2.1"


def text_to_image(version: str) -> Graph:
    v, is21 = _v(version)
    g = Graph(f"kandinsky-{v}-text-to-image")
    _common_notes(g, f"## Kandinsky {version}: text to image\n\nThe **prior** turns the prompt into a CLIP image "
                     "embedding; the **decoder** UNet denoises a latent conditioned on it; **MoVQ** decodes the "
                     "latent to pixels.\n\nThe empty latent only gives the size: any multiple of 8 pixels (the "
                     f"models were trained at {'512' if is21 else '768'} px)."
                     + ("\n\nKandinsky 2.1's decoder also reads the prompt (through its multilingual text "
                        "encoder); the prompt travels with the embeds." if is21 else ""),
                  ("prior21", "decoder21") if is21 else ("prior22", "decoder22"))
    prior = _prior(g, version)
    embeds = _text(g, prior, "A alien cheeseburger creature eating itself, claymation, cinematic, moody lighting")
    decoder = _decoder(g, "decoder21" if is21 else "decoder22")
    latent = _empty_latent(g, 330, 512 if is21 else 768)
    _sample_and_save(g, decoder, embeds, latent, f"kandinsky{v.replace('-', '')}_t2i",
                     steps=100 if is21 else 50, sampler="ddim" if is21 else "ddpm")
    return g


def image_to_image(version: str) -> Graph:
    v, is21 = _v(version)
    g = Graph(f"kandinsky-{v}-image-to-image")
    _common_notes(g, f"## Kandinsky {version}: image to image\n\nThe input image is resized, encoded by MoVQ and "
                     "noised; the decoder re-denoises it towards the prompt's embedding.\n\n`denoise` is "
                     "diffusers' `strength`: with S steps, the last floor(S x denoise) steps run. Low values keep "
                     "the image, 1.0 ignores it.",
                  ("prior21", "decoder21") if is21 else ("prior22", "decoder22"))
    prior = _prior(g, version)
    embeds = _text(g, prior, "A red cartoon frog, 4k")
    decoder = _decoder(g, "decoder21" if is21 else "decoder22")
    source = _load_image(g, 0, "Input image")
    scaled = _scale(g, source, 330, 768)
    latent = _node(g, "KandinskyMoVQEncode", (X_PREP, 510), "MoVQ: image to latent",
                   {"movq": decoder.out(1), "image": scaled.out()}, tile_size=0)
    _sample_and_save(g, decoder, embeds, latent, f"kandinsky{v.replace('-', '')}_i2i", steps=100,
                     sampler="ddim" if is21 else "ddpm", denoise=0.3)
    return g


def inpaint(version: str) -> Graph:
    v, is21 = _v(version)
    g = Graph(f"kandinsky-{v}-inpaint")
    _common_notes(g, f"## Kandinsky {version}: inpainting\n\nThe example image's transparent ellipse is "
                     "the area to repaint (LoadImage turns transparency into the MASK). For your own image, "
                     "right-click the **Input image** node > *Open in MaskEditor* and paint the area to repaint. The mask follows ComfyUI's convention: "
                     "**white (1) = repaint**, black = keep. For masks drawn for the original Kandinsky code "
                     "(black = repaint) put a *Kandinsky Mask Invert* node between the mask and the encoder.\n\n"
                     "The image is resized without cropping so that the mask (resized with it by the encoder) "
                     "stays aligned.",
                  ("prior21", "inpaint21") if is21 else ("prior22", "inpaint22"))
    prior = _prior(g, version)
    embeds = _text(g, prior, "a hat")
    decoder = _decoder(g, "inpaint21" if is21 else "inpaint22")
    source = _load_image(g, 0, "Input image (paint the mask here)", INPAINT_EXAMPLE)  # its transparent area = mask
    scaled = _scale(g, source, 330, 768, crop="disabled")
    latent = _node(g, "KandinskyMoVQEncode", (X_PREP, 510), "MoVQ: image + mask to latent",
                   {"movq": decoder.out(1), "image": scaled.out(), "mask": source.out(1)}, tile_size=0)
    _sample_and_save(g, decoder, embeds, latent, f"kandinsky{v.replace('-', '')}_inpaint",
                     steps=100 if is21 else 50, sampler="ddim" if is21 else "ddpm")
    return g


def interpolate(version: str) -> Graph:
    v, is21 = _v(version)
    g = Graph(f"kandinsky-{v}-interpolate")
    _common_notes(g, f"## Kandinsky {version}: interpolation\n\nMixes a text and two images: each becomes a CLIP "
                     "image embedding (the prior for the text, the CLIP image encoder for the images), and "
                     "*Interpolate* sums them with the weights (diffusers' `interpolate`). Each weight's label "
                     "shows its share of the mix.\n\nConnect another input to the empty pair at the bottom of "
                     "the node and a new pair appears (up to 8).",
                  ("prior21", "decoder21") if is21 else ("prior22", "decoder22"))
    prior = _prior(g, version)
    text = _text(g, prior, "a cat", negative="")
    image_a = _load_image(g, 0, "Image 1")
    image_b = _load_image(g, 1, "Image 2")
    embed_a = _node(g, "KandinskyImageEmbed", (X_PREP, 330), "Prior: image 1 to embeds",
                    {"prior": prior.out(), "image": image_a.out()})
    embed_b = _node(g, "KandinskyImageEmbed", (X_PREP, 430), "Prior: image 2 to embeds",
                    {"prior": prior.out(), "image": image_b.out()})
    mixed = _node(g, "KandinskyInterpolate", (X_PREP, 530), "Interpolate (text + 2 images)",
                  {"embeds_1": text.out(), "embeds_2": embed_a.out(), "embeds_3": embed_b.out()},
                  weight_1=0.3, weight_2=0.3, weight_3=0.4, weight_4=0.0)
    mixed.size = (300, 210)
    decoder = _decoder(g, "decoder21" if is21 else "decoder22")
    latent = _empty_latent(g, 790, 512 if is21 else 768)
    _sample_and_save(g, decoder, mixed, latent, f"kandinsky{v.replace('-', '')}_interpolate",
                     steps=100 if is21 else 50, sampler="ddim" if is21 else "ddpm")
    return g


def emb2emb() -> Graph:
    g = Graph("kandinsky-2-2-emb2emb")
    _common_notes(g, "## Kandinsky 2.2: emb2emb (image + text prior)\n\nThe prior starts from the input image's "
                     "CLIP embedding, noised to `strength`, and denoises it towards the prompt "
                     "(KandinskyV22PriorEmb2EmbPipeline). Low strength keeps the image's content, 1.0 ignores "
                     "it. The decoder then draws a new image from that embedding.", ("prior22", "decoder22"))
    prior = _prior(g, "2.2")
    source = _load_image(g, 0, "Input image")
    embeds = _node(g, "KandinskyPriorEmb2Emb", (X_PREP, 0), "Prior: image + text to embeds",
                   {"prior": prior.out(), "image": source.out()}, prompt="red cat, 4k photo",
                   negative_prompt=NEGATIVE, strength=0.3, seed=42, steps=25, guidance_scale=4.0)
    decoder = _decoder(g, "decoder22")
    latent = _empty_latent(g, 350, 768)
    _sample_and_save(g, decoder, embeds, latent, "kandinsky22_emb2emb")
    return g


def depth(i2i: bool) -> Graph:
    g = Graph(f"kandinsky-2-2-depth-{'image-to-image' if i2i else 'text-to-image'}")
    _common_notes(g, "## Kandinsky 2.2: depth ControlNet, " + ("image to image" if i2i else "text to image")
                     + "\n\n*Kandinsky Depth Estimate* turns the input image into a depth map (near = bright) with "
                     "the depth model (Intel/dpt-hybrid-midas, as diffusers' examples; any transformers "
                     "depth-estimation folder such as Depth Anything V2 works too); *Kandinsky Depth Hint* "
                     "resizes it to the output size for the ControlNet. To use a depth map you already have, "
                     "connect it to the hint node directly (1 or 3 channels, any size and value range)."
                     + ("\n\nThe same image gives the depth and the start latent. The prior runs emb2emb on it "
                        "(strength 0.85) and the decoder re-denoises the encoded image with `denoise` 0.5, as "
                        "diffusers' ControlnetImg2Img example does." if i2i else ""),
                  ("prior22", "depth22", "dpt"))
    prior = _prior(g, "2.2")
    decoder = _decoder(g, "depth22")
    source = _load_image(g, 0, "Input image")
    scaled = _scale(g, source, 350, 768)
    depth_model = _node(g, "KandinskyDepthModelLoader", (X_LOAD, Y_IMAGES + Y_IMAGE_STEP), "Load depth model",
                        depth_model_name=MODELS["dpt"])
    depth_map = _node(g, "KandinskyDepthEstimate", (X_PREP, 640), "Image to depth map",
                      {"depth_model": depth_model.out(), "image": scaled.out()})
    hint = _node(g, "KandinskyDepthHint", (X_PREP, 730), "Depth map to hint", {"image": depth_map.out()})
    _node(g, "PreviewImage", (X_PREP, 820), "Depth map preview", {"images": depth_map.out()})
    if i2i:
        embeds = _node(g, "KandinskyPriorEmb2Emb", (X_PREP, 0), "Prior: image + text to embeds",
                       {"prior": prior.out(), "image": source.out()}, prompt="A robot, 4k photo",
                       negative_prompt=DEPTH_NEGATIVE, strength=0.85, seed=43, steps=25, guidance_scale=4.0)
        latent = _node(g, "KandinskyMoVQEncode", (X_PREP, 530), "MoVQ: image to latent",
                       {"movq": decoder.out(1), "image": scaled.out()}, tile_size=0)
        _sample_and_save(g, decoder, embeds, latent, "kandinsky22_depth_i2i", denoise=0.5, hint=hint, seed=43)
    else:
        embeds = _text(g, prior, "A robot, 4k photo", negative=DEPTH_NEGATIVE, seed=43)
        latent = _empty_latent(g, 530, 768)
        _sample_and_save(g, decoder, embeds, latent, "kandinsky22_depth_t2i", hint=hint, seed=43)
    return g


K3_NOTE = (
    "\n\nKandinsky 3 has no prior: the **T5 text encoder** (Flan-UL2, 8.7 B parameters) turns the prompt into "
    "text embeds and the UNet reads them directly. Defaults as diffusers: 25 steps, guidance 3.0 (K3's "
    "guidance, (g + 1) cond - g uncond), 1024 x 1024.\n\nFor a 12 GB GPU set the text encoder's `dtype` to "
    "`fp8_e4m3fn` and both loaders' `memory_mode` to `model_offload` (or `lowvram`); see docs/KANDINSKY_3.md."
)


def _k3_models(g: Graph, prompt: str, negative: str = "", *, text_encoder_name: str = MODELS["k3"],
               decoder_name: str = MODELS["k3"], version: str = "Kandinsky 3") -> tuple[Node, Node]:
    """The Kandinsky 3 text encoder (with the prompt encoded) and decoder loaders: (embeds node, decoder node)."""
    text_encoder = _node(g, "KandinskyTextEncoderLoader", (X_LOAD, 0), f"Load text encoder ({version})",
                         text_encoder_name=text_encoder_name, dtype="auto", memory_mode="auto")
    embeds = _node(g, "KandinskyTextEncode", (X_PREP, 0), "Text encoder: prompt to embeds",
                   {"text_encoder": text_encoder.out()}, prompt=prompt, negative_prompt=negative)
    decoder = _node(g, "KandinskyDecoderLoader", (X_LOAD, Y_DECODER_LOADER), f"Load UNet + MoVQ ({version})",
                    decoder_name=decoder_name, dtype="auto", memory_mode="auto")
    return embeds, decoder


def text_to_image3() -> Graph:
    g = Graph("kandinsky-3-text-to-image")
    _common_notes(g, "## Kandinsky 3: text to image\n\nThe text encoder turns the prompt into T5 states; the "
                     "UNet denoises a latent conditioned on them; **MoVQ** decodes the latent to pixels. The "
                     "empty latent only gives the size (any multiple of 8 pixels; trained at 1024 px). An empty "
                     "negative prompt is diffusers' `negative_prompt=None`." + K3_NOTE, ("k3",))
    embeds, decoder = _k3_models(g, "A photograph of the inside of a subway train. There are raccoons sitting on "
                                    "the seats. One of them is reading a newspaper. The window shows the city in "
                                    "the background.")
    latent = _empty_latent(g, 230, 1024)
    _sample_and_save(g, decoder, embeds, latent, "kandinsky3_t2i", steps=25, guidance_scale=3.0)
    return g


def image_to_image3() -> Graph:
    g = Graph("kandinsky-3-image-to-image")
    _common_notes(g, "## Kandinsky 3: image to image\n\nThe input image is resized, encoded by MoVQ and noised; "
                     "the UNet re-denoises it towards the prompt.\n\n`denoise` is diffusers' `strength` "
                     "(Kandinsky3Img2ImgPipeline): with S steps, the last floor(S x denoise) steps run. Low "
                     "values keep the image, 1.0 ignores it." + K3_NOTE, ("k3",))
    embeds, decoder = _k3_models(g, "A painting of the inside of a subway train with tiny raccoons.")
    source = _load_image(g, 0, "Input image")
    scaled = _scale(g, source, 230, 1024)
    latent = _node(g, "KandinskyMoVQEncode", (X_PREP, 410), "MoVQ: image to latent",
                   {"movq": decoder.out(1), "image": scaled.out()})
    _sample_and_save(g, decoder, embeds, latent, "kandinsky3_i2i", steps=25, guidance_scale=3.0, denoise=0.75)
    return g


K31_NOTE = (
    "\n\nThese are the UNets of the **original ai-forever Kandinsky 3.1 release**, loaded from its files as "
    "they are: the decoder loader lists each as `Kandinsky3.1 / base`, `/ inpainting`, `/ flash`, the text "
    "encoder loader its `flan_ul2_encoder`. See docs/KANDINSKY_3_ORIGINALS.md."
)


def _k31_models(g: Graph, prompt: str, unet: str) -> tuple[Node, Node]:
    """The original 3.1 release's text encoder (prompt encoded) and one of its UNets: (embeds, decoder)."""
    release = MODELS["k31"]
    return _k3_models(g, prompt, text_encoder_name=f"{release} / flan_ul2_encoder", decoder_name=f"{release} / {unet}",
                      version=f"Kandinsky 3.1 {unet}")


def inpaint31() -> Graph:
    g = Graph("kandinsky-3-1-inpaint")
    _common_notes(g, "## Kandinsky 3.1: inpainting\n\nRight-click the **Input image** node > *Open in MaskEditor* "
                     "and paint the area to repaint: **white (1) = repaint**, black = keep (ComfyUI's convention, "
                     "which the original 3.1 code shares). The 9-channel inpainting UNet sees the image with the "
                     "masked area blanked and the mask at every step, with the original sampler `k3_original` "
                     "(50 steps, guidance 4 as the original). Any multiple of 8 px." + K31_NOTE, ("k31",))
    embeds, decoder = _k31_models(g, "a red fox sitting on the bench", "inpainting")
    source = _load_image(g, 0, "Input image (paint the mask here)")
    scaled = _scale(g, source, 330, 1024, crop="disabled")
    latent = _node(g, "KandinskyMoVQEncode", (X_PREP, 510), "MoVQ: image + mask to latent",
                   {"movq": decoder.out(1), "image": scaled.out(), "mask": source.out(1)})
    _sample_and_save(g, decoder, embeds, latent, "kandinsky31_inpaint", steps=50, guidance_scale=4.0,
                     sampler="k3_original")
    return g


def flash31() -> Graph:
    g = Graph("kandinsky-3-1-flash")
    _common_notes(g, "## Kandinsky 3.1 Flash: text to image in 4 steps\n\nThe Flash UNet is distilled to draw "
                     "in 4 unguided steps (times 979, 729, 479, 229) with the `flash` sampler; `steps` and "
                     "`guidance_scale` are ignored, and the Flash UNet runs with no other sampler." + K31_NOTE,
                  ("k31",))
    embeds, decoder = _k31_models(g, "A photograph of a lighthouse on a cliff at sunset, 4k", "flash")
    latent = _empty_latent(g, 230, 1024)
    _sample_and_save(g, decoder, embeds, latent, "kandinsky31_flash", steps=4, guidance_scale=0.0, sampler="flash")
    return g


# --- Kandinsky in ComfyUI's own sampling stack (the bridge nodes) -------------------------------------------

X_BRIDGE = X_DECODE  # bridge nodes in the decoder column, ComfyUI's sampler and VAE nodes to their right
X_SAMPLE = X_SAVE
X_STOCK_SAVE = X_SAVE + 360
BRIDGE_NOTE = (
    "\n\n**Kandinsky UNet to MODEL** puts the decoder UNet into ComfyUI's own sampling stack (any sampler and "
    "scheduler; the sigmas are the repo's training schedule), **Kandinsky Conditioning** turns the prior's "
    "embeds into positive / negative CONDITIONING (the negative is the prior's negative embedding), and "
    "**Kandinsky MoVQ to VAE** lets the stock VAE nodes decode and encode MoVQ latents. `cfg` is Kandinsky's "
    "guidance scale (4 is the diffusers default). See docs/COMFY_SAMPLING.md."
)


def _bridge(g: Graph, decoder: Node, embeds: Node) -> tuple[Node, Node, Node]:
    """(MODEL node, CONDITIONING node: outputs positive 0 / negative 1, VAE node) for a decoder loader."""
    model = _node(g, "KandinskyUNetToModel", (X_BRIDGE, 0), "UNet to MODEL", {"unet": decoder.out(0)})
    cond = _node(g, "KandinskyConditioning", (X_BRIDGE, 80), "Embeds to CONDITIONING", {"embeds": embeds.out()})
    vae = _node(g, "KandinskyMoVQToVAE", (X_BRIDGE, 200), "MoVQ to VAE", {"movq": decoder.out(1)})
    return model, cond, vae


def _ksample_and_save(g: Graph, model: Node, cond: Node, vae: Node, latent: Node, prefix: str, *, steps: int = 30,
                      sampler: str = "dpmpp_2m", scheduler: str = "karras", denoise: float = 1.0) -> Node:
    sampled = _node(g, "KSampler", (X_SAMPLE, 0), "KSampler",
                    {"model": model.out(), "positive": cond.out(0), "negative": cond.out(1), "latent_image": latent.out()},
                    seed=42, steps=steps, cfg=4.0, sampler_name=sampler, scheduler=scheduler, denoise=denoise)
    image = _node(g, "VAEDecode", (X_SAMPLE, 320), "VAE Decode (MoVQ)", {"samples": sampled.out(), "vae": vae.out()})
    return _node(g, "SaveImage", (X_STOCK_SAVE, 0), "Save image", {"images": image.out()}, filename_prefix=prefix)


def ksampler_text_to_image() -> Graph:
    g = Graph("kandinsky-2-2-ksampler-text-to-image")
    _common_notes(g, "## Kandinsky 2.2 with KSampler: text to image\n\nThe prior's embeddings drive ComfyUI's "
                     "stock **KSampler** (here DPM++ 2M with the Karras schedule, 30 steps); previews show while "
                     "it samples." + BRIDGE_NOTE, ("prior22", "decoder22"))
    embeds = _text(g, _prior(g, "2.2"), "A alien cheeseburger creature eating itself, claymation, cinematic, moody lighting")
    decoder = _decoder(g, "decoder22")
    model, cond, vae = _bridge(g, decoder, embeds)
    _ksample_and_save(g, model, cond, vae, _empty_latent(g, 330, 768), "kandinsky22_ksampler_t2i")
    return g


def ksampler_image_to_image() -> Graph:
    g = Graph("kandinsky-2-2-ksampler-image-to-image")
    _common_notes(g, "## Kandinsky 2.2 with KSampler: image to image\n\nThe stock **VAE Encode** encodes the "
                     "resized image with MoVQ; KSampler's `denoise` sets how much of it is redrawn (ComfyUI's "
                     "meaning: the last denoise x steps of a longer schedule)." + BRIDGE_NOTE,
                  ("prior22", "decoder22"))
    embeds = _text(g, _prior(g, "2.2"), "A red cartoon frog, 4k")
    decoder = _decoder(g, "decoder22")
    model, cond, vae = _bridge(g, decoder, embeds)
    scaled = _scale(g, _load_image(g, 0, "Input image"), 330, 768)
    latent = _node(g, "VAEEncode", (X_PREP, 510), "VAE Encode (MoVQ)", {"pixels": scaled.out(), "vae": vae.out()})
    _ksample_and_save(g, model, cond, vae, latent, "kandinsky22_ksampler_i2i", denoise=0.5)
    return g


def ksampler_inpaint() -> Graph:
    g = Graph("kandinsky-2-2-ksampler-inpaint")
    _common_notes(g, "## Kandinsky 2.2 with KSampler: inpainting\n\nPaint the mask on the **Input image** "
                     "(white = repaint). The stock **VAE Encode (for Inpainting)** puts it on the LATENT as "
                     "`noise_mask`; the inpainting UNet receives the masked image latents and the keep mask as its "
                     "extra channels, built from that mask." + BRIDGE_NOTE, ("prior22", "inpaint22"))
    embeds = _text(g, _prior(g, "2.2"), "a hat")
    decoder = _decoder(g, "inpaint22")
    model, cond, vae = _bridge(g, decoder, embeds)
    source = _load_image(g, 0, "Input image (paint the mask here)")
    scaled = _scale(g, source, 330, 768, crop="disabled")  # no crop: the encoder resizes the mask to match
    latent = _node(g, "VAEEncodeForInpaint", (X_PREP, 510), "VAE Encode for inpainting (MoVQ)",
                   {"pixels": scaled.out(), "vae": vae.out(), "mask": source.out(1)}, grow_mask_by=6)
    _ksample_and_save(g, model, cond, vae, latent, "kandinsky22_ksampler_inpaint")
    return g


def custom_sampler_karras() -> Graph:
    g = Graph("kandinsky-2-2-custom-sampler-karras")
    _common_notes(g, "## Kandinsky 2.2 with SamplerCustomAdvanced\n\nThe sampler pieces as separate nodes: "
                     "**RandomNoise**, **CFGGuider** (guidance 4), **KSamplerSelect** (DPM++ 2M SDE) and "
                     "**BasicScheduler** with the `karras` schedule, which spaces the model's own sigma range "
                     "(rho 7)." + BRIDGE_NOTE, ("prior22", "decoder22"))
    embeds = _text(g, _prior(g, "2.2"), "A lighthouse on a cliff at dawn, oil painting")
    decoder = _decoder(g, "decoder22")
    model, cond, vae = _bridge(g, decoder, embeds)
    latent = _empty_latent(g, 330, 768)
    noise = _node(g, "RandomNoise", (X_SAMPLE, 0), "RandomNoise", noise_seed=42)
    guider = _node(g, "CFGGuider", (X_SAMPLE, 120), "CFGGuider",
                   {"model": model.out(), "positive": cond.out(0), "negative": cond.out(1)}, cfg=4.0)
    sampler = _node(g, "KSamplerSelect", (X_SAMPLE, 260), "KSamplerSelect", sampler_name="dpmpp_2m_sde")
    sigmas = _node(g, "BasicScheduler", (X_SAMPLE, 360), "BasicScheduler (karras)", {"model": model.out()},
                   scheduler="karras", steps=30, denoise=1.0)
    sampled = _node(g, "SamplerCustomAdvanced", (X_SAMPLE, 510), "SamplerCustomAdvanced",
                    {"noise": noise.out(), "guider": guider.out(), "sampler": sampler.out(), "sigmas": sigmas.out(),
                     "latent_image": latent.out()})
    image = _node(g, "VAEDecode", (X_SAMPLE, 680), "VAE Decode (MoVQ)", {"samples": sampled.out(0), "vae": vae.out()})
    _node(g, "SaveImage", (X_STOCK_SAVE, 0), "Save image", {"images": image.out()},
          filename_prefix="kandinsky22_custom_karras")
    return g


def ksampler_text_to_image3() -> Graph:
    g = Graph("kandinsky-3-ksampler-text-to-image")
    _common_notes(g, "## Kandinsky 3 with KSampler: text to image\n\nThe T5 text states (positive = the prompt, "
                     "negative = the negative prompt's states) drive ComfyUI's stock **KSampler** (DPM++ 2M with the "
                     "Karras schedule, 30 steps) over the K3 UNet's own cosine schedule. Kandinsky 3 guides as "
                     "(g + 1)·cond − g·uncond, so ComfyUI's `cfg` is K3's guidance scale + 1: cfg 4 is K3's "
                     "default guidance 3. See docs/COMFY_SAMPLING.md." + K3_NOTE, ("k3",))
    embeds, decoder = _k3_models(g, "A photograph of the inside of a subway train. There are raccoons sitting on "
                                    "the seats. One of them is reading a newspaper.", "low quality, bad anatomy")
    model, cond, vae = _bridge(g, decoder, embeds)
    _ksample_and_save(g, model, cond, vae, _empty_latent(g, 330, 1024), "kandinsky3_ksampler_t2i")
    return g


def all_graphs() -> list[Graph]:
    return [
        text_to_image("2.2"), image_to_image("2.2"), inpaint("2.2"), interpolate("2.2"), emb2emb(),
        depth(i2i=False), depth(i2i=True),
        text_to_image("2.1"), image_to_image("2.1"), inpaint("2.1"), interpolate("2.1"),
        text_to_image3(), image_to_image3(),
        inpaint31(), flash31(),
        ksampler_text_to_image(), ksampler_image_to_image(), ksampler_inpaint(), custom_sampler_karras(),
        ksampler_text_to_image3(),
    ]


def render() -> dict[Path, str]:
    """Every file this script writes, path -> text."""
    files = {}
    for graph in all_graphs():
        files[HERE / f"{graph.name}.json"] = json.dumps(graph.ui(), indent=2, ensure_ascii=False) + "\n"
        files[HERE / "api" / f"{graph.name}.json"] = json.dumps(graph.api(), indent=2, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [str(p.relative_to(ROOT)) for p, text in files.items() if not p.is_file() or p.read_text() != text]
        if stale:
            print("out of date (run python workflows/generate.py):", *stale, sep="\n  ")
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    thumbnails.write_all(HERE)  # a template-browser thumbnail per workflow, and the example inputs
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
