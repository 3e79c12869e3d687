"""Importing the pack is cheap: no transformers model or tokenizer module, no model built (issue 10, item 10).

ComfyUI imports every custom node pack at startup, after torch; whatever the pack imports then delays the
server for every user, whether they use Kandinsky or not.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = """
import importlib.util, json, sys, time
import torch
import torch.nn

built = []
torch.nn.Module.__init__ = (lambda init: lambda self, *a, **k: (built.append(type(self).__name__), init(self, *a, **k))[1])(torch.nn.Module.__init__)
root = sys.argv[1]
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("kandinsky_pack", root + "/__init__.py", submodule_search_locations=[root])
module = importlib.util.module_from_spec(spec)
sys.modules["kandinsky_pack"] = module
spec.loader.exec_module(module)
seconds = time.perf_counter() - start
print(json.dumps({
    "seconds": seconds,
    "nodes": len(module.NODE_CLASS_MAPPINGS),
    "transformers": sorted(m for m in sys.modules if m == "transformers" or m.startswith("transformers.")),
    "built": built,
}))
"""


def test_importing_the_pack_imports_no_transformers_and_builds_nothing():
    # A fresh interpreter that already imported torch, as ComfyUI has when it imports custom nodes.
    out = subprocess.run([sys.executable, "-c", _PROBE, ROOT], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["nodes"] > 0
    models = [m for m in report["transformers"] if m.startswith("transformers.models.")]
    assert not models, f"importing the pack imported transformers model/tokenizer modules: {models[:10]}"
    assert not report["transformers"], f"importing the pack imported transformers: {report['transformers'][:5]}"
    assert not report["built"], f"importing the pack built modules: {report['built'][:10]}"
    print(f"added import time after torch: {report['seconds']:.3f} s")
