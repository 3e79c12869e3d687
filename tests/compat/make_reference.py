"""Write the tiny repos and reference outputs of the transformers-compatibility step (main venv).

    python tests/compat/make_reference.py DIR    # DIR/models/kandinsky/<repos>, DIR/reference.pt
"""
from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS.parent), str(TESTS), str(TESTS / "compat")]

import torch  # noqa: E402

from conftest import load_pack  # noqa: E402
from graphs import REPOS, run_graphs  # noqa: E402
from tiny_models.tokenizers import make_clip_tokenizer  # noqa: E402


def main(folder: Path) -> None:
    models = folder / "models" / "kandinsky"
    shutil.rmtree(folder, ignore_errors=True)
    models.mkdir(parents=True)
    for name, (module, builder, extra) in REPOS.items():
        torch.manual_seed(0)
        build = getattr(importlib.import_module(module), builder)
        built = build(folder / "build" / name) if extra is None else build(folder / "build" / name, extra)
        shutil.move(str(built), str(models / name))
    shutil.rmtree(folder / "build")
    for tokenizer in models.glob("*/tokenizer"):  # the Hub layout (vocab.json, merges.txt) 4.5x's CLIPTokenizer reads
        if '"CLIPTokenizer"' in (tokenizer / "tokenizer_config.json").read_text():
            make_clip_tokenizer(tokenizer)
    os.environ.update(KANDINSKY_MODEL_DIR=str(models), KANDINSKY_DEVICE="cpu")
    torch.save(run_graphs(load_pack().NODE_CLASS_MAPPINGS), folder / "reference.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
