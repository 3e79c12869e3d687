"""The node graphs of graphs.py against the main venv's outputs, in a venv with another transformers.

Runs when KANDINSKY_COMPAT_DIR names a folder written by make_reference.py (.ci/run does this with
transformers 4.57 and no diffusers); skipped otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from graphs import run_graphs

COMPAT_DIR = os.environ.get("KANDINSKY_COMPAT_DIR")
TOLERANCE = 1e-4  # the same weights through another transformers release: float rounding only

pytestmark = pytest.mark.skipif(not COMPAT_DIR, reason="KANDINSKY_COMPAT_DIR is not set (see .ci/run)")


def test_node_graphs_match_the_main_venv(pack, monkeypatch):
    import transformers

    folder = Path(COMPAT_DIR)
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", str(folder / "models" / "kandinsky"))
    monkeypatch.setenv("KANDINSKY_DEVICE", "cpu")
    reference = torch.load(folder / "reference.pt", weights_only=True)
    outputs = run_graphs(pack.NODE_CLASS_MAPPINGS)
    assert sorted(outputs) == sorted(reference)
    for name, expected in reference.items():
        diff = (outputs[name].float() - expected.float()).abs().max().item()
        assert diff <= TOLERANCE, f"{name}: max abs diff {diff} with transformers {transformers.__version__}"
    print(f"{len(reference)} outputs match with transformers {transformers.__version__}")
