"""scripts/kandinsky_queue.py, the headless queue command.

CPU tests (always): the overrides, the error reports, and whole runs against a small stdlib HTTP server
that answers like ComfyUI (success, validation error, runtime error). Real-host tests (marked comfyui,
with COMFYUI_PATH): the command as a subprocess against the real server of tests/test_comfyui_host.py.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from test_comfyui_host import COMFYUI_PATH, comfy_server, png_size, rgba_test_image  # noqa: F401 (shared fixture)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "kandinsky_queue.py"
WORKFLOWS = ROOT / "workflows"


def import_script():
    import importlib.util

    if "kandinsky_queue" not in sys.modules:
        spec = importlib.util.spec_from_file_location("kandinsky_queue", SCRIPT)
        sys.modules["kandinsky_queue"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["kandinsky_queue"])
    return sys.modules["kandinsky_queue"]


kq = import_script()


def args(**kw) -> argparse.Namespace:
    base = dict(prompt=None, negative_prompt=None, seed=None, size=None, set=[], image=[])
    return argparse.Namespace(**{**base, **kw})


def api(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())


# --- overrides --------------------------------------------------------------------------------------

def test_overrides_set_every_matching_input():
    wf = api("kandinsky-2-2-interpolate")
    kq.apply_overrides(wf, args(prompt="a dog", negative_prompt="blurry", seed=7, size=(512, 320),
                                set=["Decoder: sample latent.steps=12", "Interpolate (text + 2 images).weight_3=0.25",
                                     "Save image.filename_prefix=run/x"]))
    nodes = {n["_meta"]["title"]: n["inputs"] for n in wf.values()}
    assert nodes["Prior: text to embeds"]["prompt"] == "a dog"
    assert nodes["Prior: text to embeds"]["negative_prompt"] == "blurry"
    assert {n["seed"] for n in nodes.values() if "seed" in n} == {7}
    assert (nodes["Image size (empty latent)"]["width"], nodes["Image size (empty latent)"]["height"]) == (512, 320)
    assert nodes["Decoder: sample latent"]["steps"] == 12
    assert nodes["Interpolate (text + 2 images)"]["weight_3"] == 0.25
    assert nodes["Save image"]["filename_prefix"] == "run/x"
    assert isinstance(nodes["Interpolate (text + 2 images)"]["embeds_3"], list)  # links untouched


def test_overrides_reject_what_the_workflow_lacks():
    with pytest.raises(kq.UsageError, match="no node of the workflow has width and height"):
        kq.apply_overrides({"1": {"class_type": "X", "inputs": {"seed": 1}}}, args(size=(64, 64)))
    with pytest.raises(kq.UsageError, match="no node of the workflow has a prompt input"):
        kq.apply_overrides({"1": {"class_type": "X", "inputs": {"seed": 1}}}, args(prompt="x"))
    with pytest.raises(kq.UsageError, match="NODE.INPUT=VALUE"):
        kq.apply_overrides(api("kandinsky-2-2-text-to-image"), args(set=["steps=3"]))
    with pytest.raises(kq.UsageError, match="no node with id or title 'Nope'"):
        kq.apply_overrides(api("kandinsky-2-2-text-to-image"), args(set=["Nope.steps=3"]))
    with pytest.raises(argparse.ArgumentTypeError, match="multiples of 8"):
        kq.parse_size("100x64")


def test_images_fill_loaders_in_order_or_by_node(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b=c.png"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    wf = api("kandinsky-2-2-interpolate")
    loaders = sorted((k for k, n in wf.items() if n["class_type"] == "LoadImage"), key=int)
    assert kq.image_targets(wf, [str(a), str(b)]) == [(loaders[0], a), (loaders[1], b)]
    assert kq.image_targets(wf, [f"Image 2={a}"]) == [(loaders[1], a)]
    depth = api("kandinsky-2-2-depth-image-to-image")
    depth_map = next(k for k, n in depth.items() if n["class_type"] == "LoadImage")
    depth[depth_map]["_meta"]["title"] = "Depth map (near = bright)"  # a title with "=" in it
    assert kq.image_targets(depth, [f"Depth map (near = bright)={a}"]) == [(depth_map, a)]
    kq.apply_overrides(depth, args(set=["Depth map (near = bright).image=x=y.png", "Resize input image.crop=disabled"]))
    assert depth[depth_map]["inputs"]["image"] == "x=y.png"
    with pytest.raises(kq.UsageError, match="no LoadImage / LoadImageMask node"):
        kq.image_targets(api("kandinsky-2-2-text-to-image"), [str(a)])
    with pytest.raises(kq.UsageError, match="all 2 image loader nodes already got an image"):
        kq.image_targets(wf, [str(a), str(a), str(a)])
    with pytest.raises(kq.UsageError, match="is not a LoadImage / LoadImageMask node"):
        kq.image_targets(wf, [f"Save image={a}"])
    with pytest.raises(kq.UsageError, match="no such file"):
        kq.image_targets(wf, [str(tmp_path / "missing.png")])


def test_ui_format_is_refused_with_a_pointer_to_the_api_twin(tmp_path):
    with pytest.raises(kq.UsageError, match="UI-format workflow"):
        kq.load_workflow(WORKFLOWS / "kandinsky-2-2-text-to-image.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(kq.UsageError, match="not an API-format workflow"):
        kq.load_workflow(bad)


def test_error_reports_name_the_failing_node():
    wf = api("kandinsky-2-2-text-to-image")
    sampler = next(k for k, n in wf.items() if n["class_type"] == "KandinskyUNetSampler")
    text = kq.validation_message(wf, {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
        "node_errors": {sampler: {"errors": [{"message": "Value 0 smaller than min of 1", "details": "steps"}],
                                  "class_type": "KandinskyUNetSampler"}},
    })
    assert "Prompt outputs failed validation" in text
    assert f"node {sampler} (KandinskyUNetSampler, 'Decoder: sample latent'): Value 0 smaller than min of 1: steps" in text
    failure = kq.run_failure(wf, {"status": {"status_str": "error", "messages": [
        ["execution_start", {}],
        ["execution_error", {"node_id": sampler, "exception_type": "ValueError", "exception_message": "bad hint\n"}],
    ]}})
    assert failure == f"ComfyUI failed while running node {sampler} (KandinskyUNetSampler, 'Decoder: sample latent'): " \
                      "ValueError: bad hint"
    assert "interrupted" in kq.run_failure(wf, {"status": {"messages": [["execution_interrupted", {"node_id": sampler}]]}})
    assert kq.run_failure(wf, {"status": {"status_str": "success", "messages": []}}) is None


# --- whole runs against a fake ComfyUI -----------------------------------------------------------------

class FakeComfy(BaseHTTPRequestHandler):
    """Answers /upload/image, /prompt, /history and /view like ComfyUI; `mode` picks the outcome."""

    mode = "success"
    uploads: list[str] = []
    prompts: list[dict] = []
    PNG = b"\x89PNG fake image bytes"

    def log_message(self, *a):  # keep pytest output clean
        pass

    def _json(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        if self.path == "/upload/image":
            assert self.headers["Content-Type"].startswith("multipart/form-data; boundary=")
            name = re.search(rb'name="image"; filename="([^"]+)"', body).group(1).decode()
            type(self).uploads.append(name)
            return self._json(200, {"name": name, "subfolder": "", "type": "input"})
        prompt = json.loads(body)["prompt"]
        type(self).prompts.append(prompt)
        sampler = next(k for k, n in prompt.items() if n["class_type"] == "KandinskyUNetSampler")
        if type(self).mode == "invalid":
            return self._json(400, {
                "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                          "details": "", "extra_info": {}},
                "node_errors": {sampler: {"errors": [{"type": "value_smaller_than_min",
                                                      "message": "Value 0 smaller than min of 1",
                                                      "details": "steps", "extra_info": {}}],
                                          "dependent_outputs": ["9"], "class_type": "KandinskyUNetSampler"}},
            })
        return self._json(200, {"prompt_id": "p1", "number": 0, "node_errors": {}})

    def do_GET(self):
        if self.path.startswith("/history/"):
            prompt = type(self).prompts[-1]
            sampler = next(k for k, n in prompt.items() if n["class_type"] == "KandinskyUNetSampler")
            save = next(k for k, n in prompt.items() if n["class_type"] == "SaveImage")
            if type(self).mode == "error":
                status = {"status_str": "error", "completed": False, "messages": [
                    ["execution_start", {"prompt_id": "p1"}],
                    ["execution_error", {"prompt_id": "p1", "node_id": sampler, "node_type": "KandinskyUNetSampler",
                                         "exception_type": "ValueError",
                                         "exception_message": "The UNet is a depth ControlNet: connect a hint."}]]}
                return self._json(200, {"p1": {"prompt": [], "outputs": {}, "status": status}})
            outputs = {save: {"images": [{"filename": "k_00001_.png", "subfolder": "", "type": "output"}]},
                       "99": {"images": [{"filename": "preview.png", "subfolder": "", "type": "temp"}]}}
            return self._json(200, {"p1": {"prompt": [], "outputs": outputs,
                                           "status": {"status_str": "success", "completed": True, "messages": []}}})
        if self.path.startswith("/object_info/"):  # the sampler type also has an optional input the file lacks
            kind = urllib.parse.unquote(self.path[len("/object_info/"):])
            inputs = {"required": {"steps": ["INT", {}]}, "optional": {"noise_offset": ["FLOAT", {}]}}
            return self._json(200, {kind: {"input": inputs}} if kind == "KandinskyUNetSampler" else {})
        if self.path.startswith("/view?"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.PNG)))
            self.end_headers()
            self.wfile.write(self.PNG)
            return
        self._json(404, {})


@pytest.fixture()
def fake_comfy():
    FakeComfy.mode, FakeComfy.uploads, FakeComfy.prompts = "success", [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeComfy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fake_success_uploads_queues_waits_and_downloads(fake_comfy, tmp_path, capsys):
    image = tmp_path / "frog.png"
    image.write_bytes(b"png")
    out = tmp_path / "out"
    code = kq.main([str(WORKFLOWS / "api" / "kandinsky-2-2-image-to-image.json"), "--server", fake_comfy,
                    "--image", str(image), "--prompt", "a frog", "--seed", "3", "--output", str(out)])
    assert code == 0
    assert FakeComfy.uploads == ["frog.png"]
    sent = FakeComfy.prompts[0]
    assert next(n for n in sent.values() if n["class_type"] == "LoadImage")["inputs"]["image"] == "frog.png"
    assert next(n for n in sent.values() if n["class_type"] == "KandinskyPriorEncode")["inputs"]["prompt"] == "a frog"
    assert [p.name for p in out.iterdir()] == ["k_00001_.png"]  # previews only with --previews
    assert (out / "k_00001_.png").read_bytes() == FakeComfy.PNG
    assert capsys.readouterr().out.strip() == str(out / "k_00001_.png")


def test_fake_validation_error_exits_1_with_the_nodes_error(fake_comfy, tmp_path, capsys):
    FakeComfy.mode = "invalid"
    code = kq.main([str(WORKFLOWS / "api" / "kandinsky-2-2-text-to-image.json"), "--server", fake_comfy,
                    "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "rejected the workflow: Prompt outputs failed validation" in err
    assert "(KandinskyUNetSampler, 'Decoder: sample latent'): Value 0 smaller than min of 1: steps" in err


def test_fake_runtime_error_exits_1_with_the_nodes_error(fake_comfy, tmp_path, capsys):
    FakeComfy.mode = "error"
    code = kq.main([str(WORKFLOWS / "api" / "kandinsky-2-2-text-to-image.json"), "--server", fake_comfy,
                    "--output", str(tmp_path), "--previews"])
    err = capsys.readouterr().err
    assert code == 1
    assert "failed while running node" in err and "ValueError: The UNet is a depth ControlNet" in err
    assert not list(tmp_path.iterdir())


def test_misspelled_set_input_is_a_usage_error_before_queueing(fake_comfy, tmp_path, capsys):
    workflow = str(WORKFLOWS / "api" / "kandinsky-2-2-text-to-image.json")
    code = kq.main([workflow, "--server", fake_comfy, "--set", "Decoder: sample latent.stepz=5", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and FakeComfy.prompts == []  # nothing queued
    assert "'Decoder: sample latent'" in err and "has no input 'stepz'" in err
    assert "steps" in err and "guidance_scale" in err and "noise_offset" in err  # the node's inputs are listed
    # an input the server lists but the file does not give is accepted
    assert kq.main([workflow, "--server", fake_comfy, "--set", "Decoder: sample latent.noise_offset=0.1",
                    "--output", str(tmp_path)]) == 0
    assert next(n for n in FakeComfy.prompts[0].values()
                if n["class_type"] == "KandinskyUNetSampler")["inputs"]["noise_offset"] == 0.1
    with pytest.raises(kq.UsageError, match="has no input 'stepz'"):  # without a server: the file's inputs
        kq.apply_overrides(api("kandinsky-2-2-text-to-image"), args(set=["Decoder: sample latent.stepz=5"]))


def test_unreachable_server_and_usage_errors(tmp_path, capsys):
    assert kq.main([str(WORKFLOWS / "api" / "kandinsky-2-2-text-to-image.json"), "--server", "http://127.0.0.1:9"]) == 1
    assert "Cannot reach the ComfyUI server" in capsys.readouterr().err
    assert kq.main([str(WORKFLOWS / "kandinsky-2-2-text-to-image.json")]) == 2
    assert "UI-format workflow" in capsys.readouterr().err


# --- against the real ComfyUI ----------------------------------------------------------------------

def run_cli(server, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv, "--server", server.url, "--timeout", "300"],
                          capture_output=True, text=True, timeout=400)


@pytest.mark.comfyui
@pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set: the real-host headless tests need a ComfyUI")
class TestRealHost:
    def test_success_saves_the_images(self, comfy_server, tmp_path):
        image = tmp_path / "input.png"
        rgba_test_image().save(image)
        out = tmp_path / "out"
        done = run_cli(comfy_server, str(WORKFLOWS / "api" / "kandinsky-2-2-image-to-image.json"),
                       "--image", str(image), "--prompt", "a headless frog", "--seed", "5", "--size", "16x16",
                       "--set", "Prior: text to embeds.steps=2", "--set", "Decoder: sample latent.steps=4",
                       "--output", str(out))
        assert done.returncode == 0, done.stderr
        files = sorted(out.iterdir())
        assert [str(p) for p in files] == done.stdout.split() and len(files) == 1
        assert png_size(files[0].read_bytes()) == (16, 16)  # ImageScale 16 px -> tiny MoVQ round trip

    def test_validation_error_exits_1_with_the_nodes_error(self, comfy_server, tmp_path):
        done = run_cli(comfy_server, str(WORKFLOWS / "api" / "kandinsky-2-2-text-to-image.json"),
                       "--set", "Decoder: sample latent.steps=0", "--output", str(tmp_path))
        assert done.returncode == 1
        assert "ComfyUI rejected the workflow" in done.stderr
        assert "(KandinskyUNetSampler, 'Decoder: sample latent')" in done.stderr
        assert "steps must be an integer from 1 to" in done.stderr  # the sampler's VALIDATE_INPUTS

    def test_runtime_error_exits_1_with_the_nodes_error(self, comfy_server, tmp_path):
        image = tmp_path / "input.png"
        rgba_test_image().save(image)
        done = run_cli(comfy_server, str(WORKFLOWS / "api" / "kandinsky-2-2-interpolate.json"),
                       "--image", str(image), "--image", str(image), "--size", "64x64",
                       "--set", "Prior: text to embeds.steps=2", "--set", "Decoder: sample latent.steps=2",
                       *[arg for i in (1, 2, 3) for arg in ("--set", f"Interpolate (text + 2 images).weight_{i}=0")],
                       "--output", str(tmp_path / "out"))
        assert done.returncode == 1
        assert "ComfyUI failed while running node" in done.stderr
        assert "(KandinskyInterpolate, 'Interpolate (text + 2 images)'): ValueError:" in done.stderr
        assert "weights are zero" in done.stderr
