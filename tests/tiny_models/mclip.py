"""Tiny Kandinsky 2.1 text encoder (diffusers MultilingualCLIP, spec §5.1) and an offline XLM-R tokenizer."""
import io
import json
import os
import random

import sentencepiece as spm
import torch
from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP
from transformers import XLMRobertaTokenizer

TINY_MCLIP = dict(
    numDims=32,
    transformerDimensions=32,
    hidden_size=32,
    intermediate_size=37,
    num_attention_heads=4,
    num_hidden_layers=5,
    vocab_size=1005,
)

_TOKENIZER_CONFIG = {
    "tokenizer_class": "XLMRobertaTokenizer",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
    "model_max_length": 512,
}

_WORDS = (
    "a an the red blue green yellow black white golden silver old young small big tiny huge happy dark bright "
    "cat dog horse bird fish robot castle ocean forest mountain city street flower tree river moon sun sky "
    "girl boy man woman astronaut dragon ship train car house garden window door lamp book cup table chair "
    "sitting running flying standing looking walking sleeping painted made drawn glowing floating dancing "
    "on in over under near through with of at by from into behind above "
    "photo painting art watercolor sketch portrait landscape render illustration poster cinematic lighting "
    "detailed quality realistic style trending artstation 4k 8k hd unreal engine night morning rain snow fog"
).split()


def build_reference_mclip(path) -> MultilingualCLIP:
    """Spec §5.1 tiny MultilingualCLIP: seed 0, save_pretrained to `path`, load back in eval mode."""
    torch.manual_seed(0)
    MultilingualCLIP(MCLIPConfig(**TINY_MCLIP)).save_pretrained(str(path))
    return MultilingualCLIP.from_pretrained(str(path)).eval()


def make_xlmr_tokenizer(path) -> XLMRobertaTokenizer:
    """Train a tiny sentencepiece unigram model offline and save it as an XLM-R tokenizer folder at `path`.

    Ids follow XLM-R's fairseq layout (<s>=0, <pad>=1, </s>=2, <unk>=3, pieces shifted by one, <mask> last);
    all ids stay below the tiny encoder's vocab_size (1005).
    """
    rng = random.Random(0)
    sentences = [
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) + rng.choice(["", ",", ".", "!"])
        for _ in range(800)
    ]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=400,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "sentencepiece.bpe.model"), "wb") as f:
        f.write(model.getvalue())
    # transformers 5 converts the sentencepiece model to tokenizer.json; saving writes both files.
    XLMRobertaTokenizer.from_pretrained(str(path)).save_pretrained(str(path))
    # Replace the version-specific tokenizer_config.json by the plain one Hub XLM-R folders carry, so the
    # folder loads with transformers 4.x and 5.x alike.
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(_TOKENIZER_CONFIG, f, indent=2)
    return XLMRobertaTokenizer.from_pretrained(str(path))
