"""Template-browser thumbnails (workflows/<name>.jpg) and the example input images (workflows/inputs/).

    python workflows/thumbnails.py    # (re)write a thumbnail for every workflows/*.json, and the inputs

ComfyUI's template browser shows `<name>.jpg` beside each template `<name>.json`. Each thumbnail is
drawn from the workflow file itself: a title band (the version and task) over a map of the graph (our
nodes purple, ComfyUI core nodes grey, notes brown, links as lines), so it is reproducible and every
template gets one, whatever templates exist. workflows/generate.py runs this after writing the JSON.

The inpainting templates load `kandinsky-inpaint-example.png`: an RGBA picture whose transparent
ellipse becomes LoadImage's MASK (1 = repaint). The pack copies workflows/inputs/ into ComfyUI's input
folder when ComfyUI loads it (nodes/paths.py), so the templates run as shipped.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs"
INPAINT_EXAMPLE = "kandinsky-inpaint-example.png"
SIZE = 512  # thumbnails are SIZE x SIZE
BAND = 112  # height of the title band
COLORS = {"ours": (110, 70, 170), "core": (80, 84, 92), "note": (120, 90, 50), "link": (150, 150, 160)}
NOTES = ("MarkdownNote", "Note")


def font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except TypeError:
        return ImageFont.load_default()


def title_lines(name: str) -> tuple[str, str]:
    """("Kandinsky 2.2", "inpaint") from "kandinsky-2-2-inpaint"; other names as they are."""
    parts = name.split("-")
    if len(parts) > 2 and parts[0] == "kandinsky" and parts[1].isdigit():
        version = ".".join(p for p in parts[1:3] if p.isdigit())
        task = " ".join(parts[1 + len(version.split(".")):])
        return f"Kandinsky {version}", task or "workflow"
    return name, ""


def thumbnail(workflow: dict, name: str) -> Image.Image:
    """The thumbnail of one UI-format workflow."""
    image = Image.new("RGB", (SIZE, SIZE), (24, 24, 28))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, SIZE, BAND), fill=(44, 30, 70))
    head, task = title_lines(name)
    draw.text((20, 16), head, font=font(34), fill=(240, 236, 250))
    draw.text((20, 62), task, font=font(30), fill=(200, 180, 240))
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    if not nodes:
        return image
    left = min(n["pos"][0] for n in nodes.values())
    top = min(n["pos"][1] for n in nodes.values())
    right = max(n["pos"][0] + n["size"][0] for n in nodes.values())
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    margin = 16
    scale = min((SIZE - 2 * margin) / max(right - left, 1), (SIZE - BAND - 2 * margin) / max(bottom - top, 1))

    def box(node: dict) -> tuple[float, float, float, float]:
        x0 = margin + (node["pos"][0] - left) * scale
        y0 = BAND + margin + (node["pos"][1] - top) * scale
        return x0, y0, x0 + node["size"][0] * scale, y0 + node["size"][1] * scale

    for link in workflow.get("links", []):  # [id, from node, from slot, to node, to slot, type]
        if link[1] in nodes and link[3] in nodes:
            a, b = box(nodes[link[1]]), box(nodes[link[3]])
            draw.line((a[2], (a[1] + a[3]) / 2, b[0], (b[1] + b[3]) / 2), fill=COLORS["link"], width=2)
    for node in nodes.values():
        kind = "note" if node["type"] in NOTES else "ours" if node["type"].startswith("Kandinsky") else "core"
        draw.rounded_rectangle(box(node), radius=4, fill=COLORS[kind], outline=(200, 200, 210))
    return image


def inpaint_example() -> Image.Image:
    """A 768 x 768 RGBA scene (sky, sun, hills, a bench) with a transparent ellipse over the bench: repaint it."""
    image = Image.new("RGBA", (768, 768))
    draw = ImageDraw.Draw(image)
    for y in range(768):  # sky to ground gradient
        t = y / 767
        draw.line((0, y, 767, y), fill=(int(90 + 100 * t), int(150 + 40 * t), int(230 - 150 * t), 255))
    draw.ellipse((540, 80, 660, 200), fill=(255, 220, 120, 255))
    draw.ellipse((-200, 420, 500, 900), fill=(70, 140, 70, 255))
    draw.ellipse((300, 460, 1000, 960), fill=(60, 120, 60, 255))
    draw.rectangle((260, 480, 500, 520), fill=(120, 80, 50, 255))  # the bench
    draw.rectangle((280, 520, 300, 580), fill=(90, 60, 40, 255))
    draw.rectangle((460, 520, 480, 580), fill=(90, 60, 40, 255))
    alpha = Image.new("L", image.size, 255)
    ImageDraw.Draw(alpha).ellipse((220, 360, 540, 620), fill=0)  # transparent = LoadImage MASK 1 = repaint
    image.putalpha(alpha)
    return image


def write_all(folder: Path = HERE, inputs: Path = INPUTS) -> list[Path]:
    """Write a thumbnail for every UI workflow in `folder` and the example inputs; returns the paths."""
    written = []
    for path in sorted(folder.glob("*.json")):
        target = path.with_suffix(".jpg")
        thumbnail(json.loads(path.read_text(encoding="utf-8")), path.stem).save(target, quality=88, optimize=True)
        written.append(target)
    inputs.mkdir(exist_ok=True)
    inpaint_example().save(inputs / INPAINT_EXAMPLE, optimize=True)
    written.append(inputs / INPAINT_EXAMPLE)
    return written


if __name__ == "__main__":
    for written_path in write_all():
        print(written_path.relative_to(HERE.parent))
    sys.exit(0)
