"""Shared test setup.

Core tests import `kandinsky_core` directly (pyproject puts the repo root on sys.path). Node tests
import the whole pack as the package `kandinsky_pack` (see `pack` fixture), because the nodes use
relative imports exactly as they do inside ComfyUI's custom_nodes folder.
"""
import importlib.util
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

torch.use_deterministic_algorithms(True)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def load_pack():
    """Import the repo root as the package `kandinsky_pack`, as ComfyUI imports a custom node pack."""
    if "kandinsky_pack" in sys.modules:
        return sys.modules["kandinsky_pack"]
    spec = importlib.util.spec_from_file_location(
        "kandinsky_pack", os.path.join(ROOT, "__init__.py"), submodule_search_locations=[ROOT]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["kandinsky_pack"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    return load_pack()
