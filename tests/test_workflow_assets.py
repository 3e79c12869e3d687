"""What the template browser and the templates need beside the JSON: a thumbnail per workflow
(workflows/<name>.jpg, written by workflows/thumbnails.py for whatever templates exist) and the masked
example image the inpainting templates load (workflows/inputs/, copied into ComfyUI's input folder).
"""
from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_comfyui_host import COMFYUI_PATH, PACK_FOLDER, comfy_server  # noqa: F401 (shared fixture)

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
sys.path.insert(0, str(WORKFLOWS))
import thumbnails  # noqa: E402


@pytest.mark.parametrize("path", UI_FILES, ids=[p.stem for p in UI_FILES])
def test_every_template_has_its_thumbnail(path):
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{thumb.name} missing: run python workflows/generate.py (or workflows/thumbnails.py)"
    with Image.open(thumb) as image:
        assert image.format == "JPEG" and image.size == (thumbnails.SIZE, thumbnails.SIZE)


def test_thumbnails_are_made_for_any_template(tmp_path):
    (tmp_path / "kandinsky-3-text-to-image.json").write_text((WORKFLOWS / "kandinsky-2-2-text-to-image.json").read_text())
    (tmp_path / "my-own.json").write_text(json.dumps({"nodes": [], "links": []}))
    thumbnails.write_all(tmp_path, inputs=tmp_path / "inputs")
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["kandinsky-3-text-to-image.jpg", "my-own.jpg"]
    assert thumbnails.title_lines("kandinsky-3-text-to-image") == ("Kandinsky 3", "text to image")
    assert thumbnails.title_lines("kandinsky-2-2-depth-image-to-image") == ("Kandinsky 2.2", "depth image to image")
    # the drawing is reproducible: the same pixels every time
    again = thumbnails.thumbnail(json.loads((WORKFLOWS / "kandinsky-2-2-inpaint.json").read_text()), "x")
    assert again.tobytes() == thumbnails.thumbnail(json.loads((WORKFLOWS / "kandinsky-2-2-inpaint.json").read_text()),
                                                   "x").tobytes()


def load_image_mask(path: Path) -> np.ndarray:
    """LoadImage's MASK output for a file: 1 - alpha (1 = repaint), zeros without an alpha channel."""
    with Image.open(path) as image:
        if "A" not in image.getbands():
            return np.zeros(image.size[::-1], np.float32)
        return 1.0 - np.asarray(image.getchannel("A"), np.float32) / 255.0


@pytest.mark.parametrize("name", ["kandinsky-2-2-inpaint", "kandinsky-2-1-inpaint"])
def test_inpainting_templates_load_a_shipped_image_with_a_repaint_area(name):
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    loaders = [n for n in api.values() if n["class_type"] == "LoadImage"]
    assert len(loaders) == 1
    shipped = WORKFLOWS / "inputs" / loaders[0]["inputs"]["image"]
    assert shipped.is_file(), f"{name} loads {shipped.name}, which the pack does not ship"
    mask = load_image_mask(shipped)
    assert 0.05 < (mask > 0.5).mean() < 0.5  # a real area to repaint, and most of the image kept
    assert np.array_equal(np.asarray(Image.open(shipped)), np.asarray(thumbnails.inpaint_example()))  # generated


def test_example_inputs_are_copied_into_comfyuis_input_folder(pack, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(get_input_directory=lambda: str(tmp_path)))
    paths = sys.modules[pack.__name__ + ".nodes.paths"]
    copied = paths.install_example_inputs()
    assert [p.name for p in copied] == [thumbnails.INPAINT_EXAMPLE]
    assert (tmp_path / thumbnails.INPAINT_EXAMPLE).read_bytes() == (WORKFLOWS / "inputs" / thumbnails.INPAINT_EXAMPLE).read_bytes()
    (tmp_path / thumbnails.INPAINT_EXAMPLE).write_bytes(b"the user's own file")
    assert paths.install_example_inputs() == []  # never overwrites
    assert (tmp_path / thumbnails.INPAINT_EXAMPLE).read_bytes() == b"the user's own file"


@pytest.mark.comfyui
@pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set")
def test_real_host_serves_thumbnails_and_has_the_example_input(comfy_server):
    for path in UI_FILES:
        data = comfy_server.get_bytes(f"/api/workflow_templates/{PACK_FOLDER}/{path.stem}.jpg")
        assert Image.open(io.BytesIO(data)).format == "JPEG"
    assert (comfy_server.base / "input" / thumbnails.INPAINT_EXAMPLE).is_file()
