"""Real-host tests: the pack inside a real ComfyUI server, driven through its HTTP API.

Needs a ComfyUI checkout named by COMFYUI_PATH (skipped otherwise) and a Python that can run it:
COMFYUI_PYTHON, else <COMFYUI_PATH>/.venv/bin/python when it exists, else this interpreter. The server
runs on a free loopback port with --cpu and a temporary --base-directory whose custom_nodes/ links to
this repository, and finds tiny random Kandinsky repos (built here, under the README's folder names)
through an --extra-model-paths-config file with a `kandinsky:` entry. Nothing is written to the checkout.

    COMFYUI_PATH=/path/to/ComfyUI python -m pytest tests/test_comfyui_host.py tests/test_headless.py -m comfyui

tests/test_headless.py uses the same server (`comfy_server`).
"""
from __future__ import annotations

import atexit
import base64
import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch
from tiny_models.node_repos import DEPTH_ESTIMATOR

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
API_FILES = sorted((WORKFLOWS / "api").glob("*.json"))
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
PACK_FOLDER = "comfyui-kandinsky"  # the pack's folder name inside custom_nodes
START_TIMEOUT = 240.0  # seconds for the server to answer after launch (first start compiles .pyc files)
RUN_TIMEOUT = 300.0  # seconds for one tiny workflow
STOCK_SAMPLERS = ("KSampler", "SamplerCustomAdvanced")  # ComfyUI's samplers, driving the bridge MODEL
TINY_LATENT = 8  # latent side for the tiny UNets: EmptyLatentImage of 64 px; tiny MoVQ scale factor 2 (depth: 8)

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set: set it to a ComfyUI checkout (and "
                                                "COMFYUI_PYTHON to its Python) to run the real-host tests"),
]


# --- the server -----------------------------------------------------------------------------------

def comfy_python(comfy_path: Path) -> str:
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    venv = comfy_path / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_tiny_models(models: Path) -> list[str]:
    """Tiny random Kandinsky repos under the README's folder names (2.1 ones when their builder exists) and a tiny
    depth estimator (dpt-hybrid-midas); returns the Kandinsky repos' names."""
    from tiny_models.depth import build_dpt
    from tiny_models.k3 import build_k3_repo
    from tiny_models.k3_original_release import build_original_release
    from tiny_models.repos import build_decoder_repo, build_prior_repo

    builders = {
        "kandinsky-3": build_k3_repo,
        "Kandinsky3.1": lambda p: build_original_release(p.parent, p.name),  # the original release layout
        "kandinsky-2-2-prior": build_prior_repo,
        "kandinsky-2-2-decoder": lambda p: build_decoder_repo(p, "decoder22"),
        "kandinsky-2-2-decoder-inpaint": lambda p: build_decoder_repo(p, "inpaint22"),
        "kandinsky-2-2-controlnet-depth": lambda p: build_decoder_repo(p, "depth22"),
    }
    try:
        from tiny_models.repos21 import build_decoder21_repo, build_prior21_repo
    except ImportError:
        pass
    else:
        builders.update({
            "kandinsky-2-1-prior": build_prior21_repo,
            "kandinsky-2-1": lambda p: build_decoder21_repo(p, "decoder21"),
            "kandinsky-2-1-inpaint": lambda p: build_decoder21_repo(p, "inpaint21"),
        })
    models.mkdir(parents=True, exist_ok=True)
    for name, build in builders.items():
        torch.manual_seed(0)
        shutil.move(str(build(models.parent / "_build" / name)), str(models / name))
    shutil.rmtree(models.parent / "_build", ignore_errors=True)
    build_dpt(models / DEPTH_ESTIMATOR)
    return sorted(builders)


class ComfyServer:
    """A ComfyUI server process with this pack and tiny models; small JSON helpers for its HTTP API."""

    def __init__(self, comfy_path: Path, workdir: Path) -> None:
        self.comfy_path = comfy_path
        self.workdir = workdir
        self.models = workdir / "models" / "kandinsky"
        self.base = workdir / "base"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "comfyui.log"
        self.process: subprocess.Popen | None = None
        self.model_names: list[str] = []

    def start(self) -> None:
        self.model_names = build_tiny_models(self.models)
        for sub in ("custom_nodes", "input", "output", "temp", "user"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "custom_nodes" / PACK_FOLDER).symlink_to(ROOT, target_is_directory=True)
        config = self.workdir / "extra_model_paths.yaml"
        config.write_text(f"kandinsky_tests:\n  kandinsky: {self.models}\n", encoding="utf-8")
        command = [comfy_python(self.comfy_path), "main.py", "--cpu", "--listen", "127.0.0.1", "--port",
                   str(self.port), "--base-directory", str(self.base), "--extra-model-paths-config", str(config),
                   "--database-url", "sqlite:///:memory:", "--disable-auto-launch", "--preview-method", "auto"]
        self.log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(command, cwd=self.comfy_path, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                self.get("/system_stats")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {START_TIMEOUT:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.log.close()
        self.process = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    # --- HTTP --------------------------------------------------------------------------------------

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read()

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                return response.status, json.loads(body) if body.strip() else {}
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def upload_png(self, name: str, image) -> str:
        """POST /upload/image (multipart) of a PIL image; returns the name LoadImage selects."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                "Content-Type: image/png\r\n\r\n").encode() + buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.url + "/upload/image", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["name"]

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        status, answer = self.post("/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})
        assert status == 200, f"POST /prompt answered {status}: {json.dumps(answer, indent=1)[:3000]}"
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None:
                return entry
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:g} s:\n{self.log_tail()}")


class ServerSocket:
    """A minimal RFC 6455 client (stdlib only) for ComfyUI's /ws: the frames the server sends one client."""

    def __init__(self, server: ComfyServer, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=RUN_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                           f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
        header = b""
        while not header.endswith(b"\r\n\r\n"):
            header += self._read(1)
        assert b" 101 " in header.split(b"\r\n")[0], header[:200]

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the server closed the websocket")
            data += chunk
        return data

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (the server's frames are unmasked and unfragmented)."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return first & 0x0F, self._read(length)

    def until_done(self, prompt_id: str) -> list[tuple[int, bytes]]:
        """Every frame up to the end of `prompt_id` (its `executing` message with node None)."""
        frames = []
        while True:
            opcode, payload = self.frame()
            frames.append((opcode, payload))
            if opcode == 1:
                message = json.loads(payload)
                data = message.get("data", {})
                if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    return frames
                if message["type"] == "execution_error":
                    raise AssertionError(json.dumps(data)[:3000])

    def close(self) -> None:
        self.sock.close()


_SHARED: dict[str, ComfyServer] = {}


def shared_server() -> ComfyServer:
    """One server per test session, shared by this module and tests/test_headless.py."""
    if "server" not in _SHARED:
        workdir = Path(tempfile.mkdtemp(prefix="kandinsky-comfyui-"))
        server = ComfyServer(Path(COMFYUI_PATH).resolve(), workdir)
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        atexit.register(server.stop)
        server.start()
        _SHARED["server"] = server
    return _SHARED["server"]


@pytest.fixture(scope="session")
def comfy_server():
    if not COMFYUI_PATH:
        pytest.skip("COMFYUI_PATH is not set")
    server = shared_server()
    yield server
    server.stop()


# --- preparing the shipped workflows for tiny models ------------------------------------------------

def load_api(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))


def rgba_test_image():
    """A 40x56 RGBA test image whose transparent corner becomes LoadImage's MASK (1 = repaint)."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    rgba = (torch.rand(40, 56, 4, generator=generator) * 255).to(torch.uint8)
    rgba[..., 3] = 255
    rgba[4:16, 8:30, 3] = 0
    return Image.fromarray(rgba.numpy(), "RGBA")




def tiny_prompt(server: ComfyServer, prompt: dict, tag: str) -> tuple[dict, int]:
    """The workflow with uploaded input images, tiny sizes and few steps; returns it and the output side."""
    depth = any(n["inputs"].get("decoder_name") == "kandinsky-2-2-controlnet-depth" for n in prompt.values())
    original = any(" / " in n["inputs"].get("decoder_name", "") for n in prompt.values())  # 4-level MoVQ
    scale = 8 if depth or original else 2
    for node_id, node in prompt.items():
        inputs = node["inputs"]
        if node["class_type"] == "LoadImage":
            inputs["image"] = server.upload_png(f"kandinsky-test-{tag}-{node_id}.png", rgba_test_image())
        if node["class_type"] == "EmptyLatentImage":
            inputs["width"] = inputs["height"] = TINY_LATENT * 8
        if node["class_type"] == "ImageScale":  # the image MoVQ encodes to a TINY_LATENT latent
            inputs["width"] = inputs["height"] = TINY_LATENT * scale
        if "steps" in inputs:  # few steps, but floor(steps x denoise) >= 1 and the prior's minimum of 2
            fraction = inputs.get("denoise", inputs.get("strength", 1.0))
            inputs["steps"] = max(2, math.ceil(1 / fraction))
        if "filename_prefix" in inputs:
            inputs["filename_prefix"] = f"kandinsky-test/{tag}"
    return prompt, TINY_LATENT * scale


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


def execution_messages(entry: dict) -> dict:
    return {event: data for event, data in entry["status"]["messages"]}


# --- tests ----------------------------------------------------------------------------------------

def test_every_node_appears_in_object_info_with_its_inputs(comfy_server, pack, monkeypatch):
    info = comfy_server.get("/object_info")
    # outside ComfyUI the loaders list KANDINSKY_MODEL_DIR: point it at the server's folder to compare
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", str(comfy_server.models))
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert name in info, f"{name} is not registered in the server:\n{comfy_server.log_tail()}"
        node = info[name]
        assert node["input"] == json.loads(json.dumps(cls.INPUT_TYPES())), name
        assert node["output"] == list(cls.RETURN_TYPES), name
        assert node["category"] == "Kandinsky"
        assert node["display_name"] == pack.NODE_DISPLAY_NAME_MAPPINGS[name]
        assert node["python_module"].endswith(PACK_FOLDER)
    priors = info["KandinskyPriorLoader"]["input"]["required"]["prior_name"][0]
    decoders = info["KandinskyDecoderLoader"]["input"]["required"]["decoder_name"][0]
    originals = [d for d in decoders if " / " in d]  # one choice per UNet of the original release folder
    assert originals == ["Kandinsky3.1 / base", "Kandinsky3.1 / inpainting", "Kandinsky3.1 / flash"]
    folders = [d for d in decoders if " / " not in d] + ["Kandinsky3.1"]
    assert sorted(priors + folders) == comfy_server.model_names  # found through extra_model_paths.yaml
    assert info["KandinskyTextEncoderLoader"]["input"]["required"]["text_encoder_name"][0] == [
        "kandinsky-3", "Kandinsky3.1 / flan_ul2_encoder"]
    assert info["KandinskyDepthModelLoader"]["input"]["required"]["depth_model_name"][0] == [DEPTH_ESTIMATOR]


def test_web_extension_and_workflow_templates_are_served(comfy_server):
    extensions = comfy_server.get("/extensions")
    assert f"/extensions/{PACK_FOLDER}/kandinsky_interpolate.js" in extensions
    assert b"registerExtension" in comfy_server.get_bytes(f"/extensions/{PACK_FOLDER}/kandinsky_interpolate.js")
    templates = comfy_server.get("/workflow_templates")
    assert sorted(templates[PACK_FOLDER]) == sorted(p.stem for p in API_FILES)  # the UI files, by name
    ui = json.loads(comfy_server.get_bytes(f"/api/workflow_templates/{PACK_FOLDER}/{API_FILES[0].name}"))
    assert ui["version"] == 0.4


PLAYWRIGHT = os.environ.get("KANDINSKY_PLAYWRIGHT")  # a folder whose node_modules holds playwright-core
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.mark.parametrize("renderer", ["classic", "vue"])
@pytest.mark.skipif(not (PLAYWRIGHT and shutil.which("node") and os.path.exists(CHROMIUM)),
                    reason="set KANDINSKY_PLAYWRIGHT to a folder with `npm install playwright-core` (and CHROMIUM to "
                           "a chromium, default /usr/bin/chromium) to drive the real frontend")
def test_interpolate_extension_in_the_real_frontend(comfy_server, renderer):
    """KandinskyInterpolate's extension in the classic and the Nodes 2.0 (Vue) renderer: share labels shown, the
    displayed weights are the sent ones, also after save and load (tests/web/interpolate_renderers.mjs)."""
    script = ROOT / "tests" / "web" / "interpolate_renderers.mjs"
    run = subprocess.run(["node", str(script), comfy_server.url, renderer], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "KANDINSKY_PLAYWRIGHT": PLAYWRIGHT, "CHROMIUM": CHROMIUM})
    if run.returncode == 3:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("name", [p.stem for p in API_FILES])
def test_api_workflow_runs_through_post_prompt(comfy_server, name):
    prompt, side = tiny_prompt(comfy_server, load_api(name), name)
    entry = comfy_server.wait(comfy_server.queue(prompt))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    saved = [(nid, image) for nid, out in entry["outputs"].items() for image in out.get("images", [])
             if prompt[nid]["class_type"] == "SaveImage"]
    assert len(saved) == 1
    image = saved[0][1]
    assert image["type"] == "output" and image["filename"].endswith(".png")
    query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
    sides = {side}
    if any(n["class_type"] == "EmptyLatentImage" for n in prompt.values()) and \
            any(n["class_type"] in STOCK_SAMPLERS for n in prompt.values()):
        # ComfyUI 0.33's samplers resize an empty latent to the model's latent format (the tiny MoVQ's factor 2):
        # the image then has EmptyLatentImage's size; 0.3.64 samples the 1/8 latent as given
        sides.add(TINY_LATENT * 8)
    assert png_size(comfy_server.get_bytes(f"/view?{query}")) in {(s, s) for s in sides}
    assert (comfy_server.base / "output" / image["subfolder"] / image["filename"]).is_file()


@pytest.mark.parametrize("encoder_mode,decoder_mode", [("model_offload", "lowvram"), ("lowvram", "model_offload")])
def test_kandinsky3_fp8_and_memory_modes_through_post_prompt(comfy_server, encoder_mode, decoder_mode):
    """The Kandinsky 3 workflow with fp8_e4m3fn weights and the offload modes in ComfyUI's model management."""
    prompt, side = tiny_prompt(comfy_server, load_api("kandinsky-3-text-to-image"), f"k3-{encoder_mode}")
    for node in prompt.values():
        if node["class_type"] in ("KandinskyTextEncoderLoader", "KandinskyDecoderLoader"):
            mode = encoder_mode if node["class_type"] == "KandinskyTextEncoderLoader" else decoder_mode
            node["inputs"].update(dtype="fp8_e4m3fn", memory_mode=mode)
    entry = comfy_server.wait(comfy_server.queue(prompt))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    saved = [image for nid, out in entry["outputs"].items() for image in out.get("images", [])
             if prompt[nid]["class_type"] == "SaveImage"]
    query = urllib.parse.urlencode({k: saved[0][k] for k in ("filename", "subfolder", "type")})
    assert png_size(comfy_server.get_bytes(f"/view?{query}")) == (side, side)


def saved_image(server: ComfyServer, prompt: dict, entry: dict) -> bytes:
    """The bytes of the one SaveImage output of a finished prompt."""
    saved = [image for nid, out in entry["outputs"].items() for image in out.get("images", [])
             if prompt[nid]["class_type"] == "SaveImage"]
    assert len(saved) == 1
    query = urllib.parse.urlencode({k: saved[0][k] for k in ("filename", "subfolder", "type")})
    return server.get_bytes(f"/view?{query}")


def test_kandinsky3_ksampler_samplers_through_post_prompt(comfy_server):
    """The K3 bridge workflow with euler / normal and dpmpp_2m / karras (the parity with the core samplers is
    in tests/bridge_comfy_script.py); a K3 CONDITIONING on a 2.2 MODEL is the bridge's version error."""
    images = {}
    for sampler, scheduler in (("euler", "normal"), ("dpmpp_2m", "karras")):
        prompt, _ = tiny_prompt(comfy_server, load_api("kandinsky-3-ksampler-text-to-image"), f"k3-ks-{sampler}")
        ksampler = next(nid for nid, n in prompt.items() if n["class_type"] == "KSampler")
        prompt[ksampler]["inputs"].update(sampler_name=sampler, scheduler=scheduler, steps=3)
        entry = comfy_server.wait(comfy_server.queue(prompt))
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
        images[sampler] = saved_image(comfy_server, prompt, entry)
    assert images["euler"] != images["dpmpp_2m"]

    prompt, _ = tiny_prompt(comfy_server, load_api("kandinsky-3-ksampler-text-to-image"), "k3-on-22")
    unet_loader = next(nid for nid, n in prompt.items() if n["class_type"] == "KandinskyDecoderLoader")
    prompt[unet_loader]["inputs"]["decoder_name"] = "kandinsky-2-2-decoder"
    entry = comfy_server.wait(comfy_server.queue(prompt))
    assert entry["status"]["status_str"] == "error"
    error = execution_messages(entry)["execution_error"]
    assert error["node_type"] == "KSampler" and error["exception_type"].endswith("ValueError")
    assert "Kandinsky 3 text embeds" in error["exception_message"] and "Kandinsky 2.2" in error["exception_message"]


def test_depth_unet_without_hint_is_the_nodes_error_in_history(comfy_server):
    prompt, _ = tiny_prompt(comfy_server, load_api("kandinsky-2-2-depth-text-to-image"), "nohint")
    sampler = next(nid for nid, n in prompt.items() if n["class_type"] == "KandinskyUNetSampler")
    del prompt[sampler]["inputs"]["hint"]  # optional, so the server accepts the prompt
    entry = comfy_server.wait(comfy_server.queue(prompt))
    assert entry["status"]["status_str"] == "error"
    error = execution_messages(entry)["execution_error"]
    assert error["node_id"] == sampler and error["node_type"] == "KandinskyUNetSampler"
    assert error["exception_type"].endswith("ValueError")
    assert "depth ControlNet" in error["exception_message"] and "KandinskyDepthHint" in error["exception_message"]


def test_interrupt_mid_run_then_the_next_prompt_succeeds(comfy_server):
    # how long the prior and a few sampler steps take on this machine now (a busy CI box is slow)
    started = time.monotonic()
    short, _ = tiny_prompt(comfy_server, load_api("kandinsky-2-2-text-to-image"), "before-interrupt")
    assert comfy_server.wait(comfy_server.queue(short))["status"]["status_str"] == "success"
    short_run = time.monotonic() - started
    prompt, _ = tiny_prompt(comfy_server, load_api("kandinsky-2-2-text-to-image"), "interrupt")
    sampler = next(nid for nid, n in prompt.items() if n["class_type"] == "KandinskyUNetSampler")
    latent = next(nid for nid, n in prompt.items() if n["class_type"] == "EmptyLatentImage")
    prompt[sampler]["inputs"].update(steps=500, seed=7)  # minutes of sampling on the CPU
    prompt[latent]["inputs"].update(width=256, height=256)
    prompt_id = comfy_server.queue(prompt)
    deadline = time.monotonic() + 60
    while not comfy_server.get("/queue")["queue_running"]:
        assert time.monotonic() < deadline, "the prompt never started"
        time.sleep(0.1)
    time.sleep(max(3.0, 2 * short_run))  # models loaded, the prior done: the sampler is stepping
    started = time.monotonic()
    status, _ = comfy_server.post("/interrupt", {})
    assert status == 200
    entry = comfy_server.wait(prompt_id, timeout=120)
    assert time.monotonic() - started < 60, "the interrupt took effect only after the run"
    assert entry["status"]["status_str"] == "error"
    messages = execution_messages(entry)
    assert "execution_interrupted" in messages and "execution_error" not in messages, json.dumps(messages)[:3000]
    assert messages["execution_interrupted"]["node_type"] == "KandinskyUNetSampler"
    assert not any(out.get("images") for out in entry["outputs"].values())

    again, side = tiny_prompt(comfy_server, load_api("kandinsky-2-2-text-to-image"), "after-interrupt")
    entry = comfy_server.wait(comfy_server.queue(again))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    assert any(out.get("images") for out in entry["outputs"].values())


PREVIEW_EVENTS = (1, 4)  # ComfyUI's binary PREVIEW_IMAGE and PREVIEW_IMAGE_WITH_METADATA (0.33) events


@pytest.mark.parametrize("name,sampler_type", [("kandinsky-2-2-ksampler-text-to-image", "KSampler"),
                                               ("kandinsky-2-2-text-to-image", "KandinskyUNetSampler")])
def test_previews_arrive_over_the_websocket(comfy_server, name, sampler_type):
    prompt, _ = tiny_prompt(comfy_server, load_api(name), f"previews-{sampler_type}")
    sampler = next(nid for nid, n in prompt.items() if n["class_type"] == sampler_type)
    prompt[sampler]["inputs"].update(steps=3, seed=int(time.time() * 1000) % 100000)  # a new seed: no cached result
    client_id = uuid.uuid4().hex
    socket_ = ServerSocket(comfy_server, client_id)
    try:
        frames = socket_.until_done(comfy_server.queue(prompt, client_id))
    finally:
        socket_.close()
    previews = [p for op, p in frames if op == 2 and int.from_bytes(p[:4], "big") in PREVIEW_EVENTS]
    assert len(previews) >= 3, f"{len(previews)} previews for the {sampler_type}'s 3 steps"
    assert any(b"\xff\xd8" in p[:64] for p in previews), "JPEG preview images"
