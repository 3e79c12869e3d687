"""Kandinsky 2.1's XLM-R tokenizer from a folder with only `sentencepiece.bpe.model`, without protobuf.

A stock ComfyUI venv has sentencepiece but no protobuf; transformers 5 then fails to convert the model
with a misleading "tiktoken is required" error. The loader falls back to reading the model with
sentencepiece (kandinsky_core/models/xlmr_spm.py), giving the ids transformers' own tokenizer gives.
The stock-venv test runs the loader in COMFYUI_PYTHON (a ComfyUI venv: no protobuf, no test extras).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from kandinsky_core.models import mclip
from kandinsky_core.models.xlmr_spm import SentencePieceXLMRTokenizer
from tiny_models.mclip import make_xlmr_tokenizer

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["a red cat", "  Red   CAT, 4k photo!  ", "хорошая собака на траве", "猫と犬", "", "x" * 300,
           "café naïve ﬁ ① Ｆｕｌｌｗｉｄｔｈ", "tab\there\nnewline"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("xlmr")
    make_xlmr_tokenizer(root / "full")
    (root / "spm").mkdir()
    shutil.copy(root / "full" / "sentencepiece.bpe.model", root / "spm")
    return root / "full", root / "spm"


def encode(tokenizer, prompts):
    return tokenizer(prompts, padding="max_length", truncation=True, max_length=mclip.MAX_LENGTH,
                     return_attention_mask=True, add_special_tokens=True, return_tensors="pt")


def test_sentencepiece_tokenizer_gives_transformers_ids(folders):
    full, spm = folders
    reference = mclip.load_xlmr_tokenizer(str(full))  # transformers' tokenizer (tokenizer.json)
    tokenizer = SentencePieceXLMRTokenizer(spm / "sentencepiece.bpe.model")
    ours, theirs = encode(tokenizer, PROMPTS), encode(reference, PROMPTS)
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    assert tokenizer(PROMPTS, add_special_tokens=True)["input_ids"] == reference(PROMPTS, add_special_tokens=True)["input_ids"]
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)


STOCK_PYTHON = os.environ.get("COMFYUI_PYTHON")


@pytest.mark.comfyui
@pytest.mark.skipif(not STOCK_PYTHON, reason="COMFYUI_PYTHON is not set (a stock ComfyUI venv without protobuf)")
def test_loads_in_a_stock_comfyui_venv(folders):
    full, spm = folders
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from kandinsky_core.models import mclip; "
            "t = mclip.load_xlmr_tokenizer(sys.argv[2]); print(t(sys.argv[3:], add_special_tokens=True)['input_ids'])")
    done = subprocess.run([STOCK_PYTHON, "-c", code, str(ROOT), str(spm), *PROMPTS[:4]], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = mclip.load_xlmr_tokenizer(str(full))
    assert done.stdout.strip() == str(reference(PROMPTS[:4], add_special_tokens=True)["input_ids"])
