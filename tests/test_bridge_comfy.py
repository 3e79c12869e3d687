"""The bridge nodes inside a real ComfyUI, in-process (tests/bridge_comfy_script.py in a subprocess with the
checkout's Python): KSampler on the bridge MODEL equals the core samplers on ComfyUI's sigmas and noise,
ancestral / SDE samplers repeat bit for bit, VAEDecode / VAEEncode equal the MoVQ nodes, ModelSamplingDiscrete
and RescaleCFG patches run, inpainting channels, depth hint, 2.1 text states, memory estimate and previews.

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/python python -m pytest -m comfyui tests/test_bridge_comfy.py
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_comfyui_host import build_tiny_models, comfy_python

ROOT = Path(__file__).resolve().parent.parent
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set: set it to a ComfyUI checkout (and "
                                                "COMFYUI_PYTHON to its Python) to run the real-host tests"),
]


def test_bridge_inside_real_comfyui():
    comfy_path = Path(COMFYUI_PATH).resolve()
    with tempfile.TemporaryDirectory(prefix="kandinsky-bridge-") as tmp:
        models = Path(tmp) / "models" / "kandinsky"
        build_tiny_models(models)
        env = {**os.environ, "PACK": str(ROOT), "TINY_MODELS": str(models),
               "PYTHONPATH": os.pathsep.join([str(comfy_path), os.environ.get("PYTHONPATH", "")])}
        result = subprocess.run([comfy_python(comfy_path), str(ROOT / "tests" / "bridge_comfy_script.py")],
                                cwd=comfy_path, env=env, capture_output=True, text=True, timeout=1800)
    assert "BRIDGE_OK" in result.stdout, result.stdout[-3000:] + result.stderr[-6000:]
    numbers = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(json.dumps(numbers, indent=1))  # shown with -s: the measured differences
    for key, value in numbers.items():
        if key.startswith("ksampler_vs_core_"):
            assert value <= 1e-3, (key, value)
        if key.startswith("ksampler_rel_vs_core_"):  # K3 text to image: latents ~1e4 (sigma_max 20291)
            assert value <= 1e-6, (key, value)
