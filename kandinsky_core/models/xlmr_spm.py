"""The XLM-R tokenizer of Kandinsky 2.1 straight from `sentencepiece.bpe.model`, with sentencepiece alone.

transformers 5 builds an XLM-R tokenizer from a bare sentencepiece model by converting it, which needs
protobuf (else it fails with a misleading "tiktoken is required" error); a stock ComfyUI venv has no
protobuf. This is the fairseq mapping the original (slow) XLMRobertaTokenizer applies, for a folder that
has no tokenizer.json: <s>=0, <pad>=1, </s>=2, <unk>=3, sentencepiece id i -> i + 1 (its <unk> -> 3),
<mask> last. It offers the call mclip.encode_text makes (batch, padding, truncation, attention mask).
"""
from __future__ import annotations

import os

import torch

BOS, PAD, EOS, UNK = 0, 1, 2, 3
FAIRSEQ_OFFSET = 1


class SentencePieceXLMRTokenizer:
    bos_token_id, pad_token_id, eos_token_id, unk_token_id = BOS, PAD, EOS, UNK

    def __init__(self, model_file: str | os.PathLike) -> None:
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor()
        self.sp.Load(str(model_file))
        self.mask_token_id = self.sp.GetPieceSize() + FAIRSEQ_OFFSET
        self.model_max_length = 512

    def __len__(self) -> int:
        return self.mask_token_id + 1

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [i + FAIRSEQ_OFFSET if i else UNK for i in self.sp.EncodeAsIds(text)]
        return [BOS, *ids, EOS] if add_special_tokens else ids

    def __call__(self, texts: str | list[str], padding: bool | str = False, truncation: bool = False,
                 max_length: int | None = None, return_attention_mask: bool = True, add_special_tokens: bool = True,
                 return_tensors: str | None = None) -> dict:
        batch = [texts] if isinstance(texts, str) else list(texts)
        rows = []
        for text in batch:
            ids = self.encode(text, add_special_tokens=False)
            if truncation and max_length is not None:
                ids = ids[: max_length - (2 if add_special_tokens else 0)]
            rows.append([BOS, *ids, EOS] if add_special_tokens else ids)
        width = max_length if padding == "max_length" and max_length else max(map(len, rows))
        pad = bool(padding)
        out = {"input_ids": [r + [PAD] * (width - len(r)) if pad else r for r in rows]}
        if return_attention_mask:
            out["attention_mask"] = [[1] * len(r) + [0] * (width - len(r)) if pad else [1] * len(r) for r in rows]
        if return_tensors == "pt":
            out = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        if isinstance(texts, str) and return_tensors is None:
            out = {k: v[0] for k, v in out.items()}
        return out
