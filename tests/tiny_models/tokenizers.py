"""Tiny offline tokenizers for tests (no Hub access exists in CI)."""
from __future__ import annotations

import json
import os

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77

# Words that get whole-word BPE merges; anything else falls back to smaller pieces / single bytes.
_WORDS = (
    "a an the of and with in on at by for to is red blue green black white yellow cat dog horse frog bird "
    "hat photo portrait painting art style oil high quality detailed low bad ugly blurry city forest night "
    "sky sea sun moon tree flower house car man woman girl boy robot cartoon beautiful landscape mountain "
    "river street castle space water fire snow"
).split()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode character table (256 entries)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, (chr(c) for c in chars)))


def _merges() -> list[tuple[str, str]]:
    """Left-to-right merges that build each word of _WORDS (with its end-of-word marker)."""
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in _WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            if (left, right) not in seen:
                seen.add((left, right))
                merges.append((left, right))
            left = left + right
    return merges


def make_clip_tokenizer(path: str | os.PathLike) -> str | os.PathLike:
    """Write a tiny CLIP BPE tokenizer folder loadable by transformers' CLIPTokenizer (4.5x and 5.x).

    Vocabulary layout as in OpenAI's CLIP: 256 byte characters, their "</w>" variants, the merges, then
    <|startoftext|> and <|endoftext|> (the two highest ids; EOS is the highest, as CLIP's pooling expects).
    Padding uses <|endoftext|>. All ids are < 1000 so they fit the tiny text encoder's vocabulary."""
    os.makedirs(path, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    merges = _merges()
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert len(vocab) == len(tokens) and len(vocab) < 1000, len(vocab)
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}
    with open(os.path.join(path, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
    config = {
        **special,
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return path
