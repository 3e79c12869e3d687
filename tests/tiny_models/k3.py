"""A tiny Kandinsky 3 repo in the real diffusers layout (kandinsky-3: model_index.json, unet/, movq/,
text_encoder/, tokenizer/, scheduler/), built offline from diffusers' and transformers' classes with the
spec §5 configs, and the T5 tokenizer it needs (a `tokenizers` Unigram model saved as T5TokenizerFast).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

K3_UNET = dict(  # diffusers' dummy Kandinsky3UNet (spec §5.1)
    in_channels=4, time_embedding_dim=4, groups=2, attention_head_dim=4, layers_per_block=3,
    block_out_channels=(32, 64), cross_attention_dim=4, encoder_hid_dim=32,
)
K3_DDPM = dict(  # kandinsky-3/scheduler (spec §3.1) = the dummy K3 scheduler
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, steps_offset=1,
    beta_schedule="squaredcos_cap_v2", clip_sample=True, thresholding=False,
)
TINY_T5 = dict(  # hf-internal-testing/tiny-random-t5 sizes, gated-GELU FFN as Flan-UL2
    vocab_size=256, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
    feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)
_WORDS = ("a painting of squirrel eating burger red cat dog photo blurry low quality ugly bad the in on with "
          "horse green forest night sky").split()


def make_t5_tokenizer(path: str | os.PathLike) -> Path:
    """A tiny T5 tokenizer folder (tokenizer.json + tokenizer_config.json): <pad> 0, </s> 1, <unk> 2, then
    whole words and single characters (Unigram), '</s>' appended, as T5's tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    chars = sorted(set("".join(_WORDS)) | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.!?'-"))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -1.0) for w in _WORDS] + [(c, -5.0) for c in chars] + [("▁" + c, -4.0) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    assert tok.get_vocab_size() < TINY_T5["vocab_size"]
    fast = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                           extra_ids=0, model_max_length=512)
    fast.save_pretrained(str(path))
    return Path(path)


def _randomize_zero_init(module: torch.nn.Module) -> None:
    """diffusers zero-initialises the conditional-norm MLPs; give them values so the test exercises them."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "context_mlp" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def build_k3_repo(path: str | os.PathLike, pipeline: str = "Kandinsky3Pipeline", strip_codebook: bool = True) -> Path:
    """The tiny K3 repo under path/repo. The MoVQ is saved without its codebook (as the real kandinsky-3 movq,
    spec §2.4) unless strip_codebook is False."""
    import diffusers
    from safetensors.torch import load_file, save_file
    from tiny_models.movq import movq_config
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    path = Path(path)
    parts = path / "_parts"
    torch.manual_seed(0)
    unet = diffusers.Kandinsky3UNet(**K3_UNET)
    _randomize_zero_init(unet)
    torch.manual_seed(0)
    movq = diffusers.VQModel(**movq_config("2level"))
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(**TINY_T5))
    pipe = getattr(diffusers, pipeline)(
        tokenizer=T5TokenizerFast.from_pretrained(str(make_t5_tokenizer(parts / "tokenizer"))),
        text_encoder=text_encoder, unet=unet, scheduler=diffusers.DDPMScheduler(**K3_DDPM), movq=movq,
    )
    repo = path / "repo"
    pipe.save_pretrained(repo)
    if strip_codebook:
        file = repo / "movq" / "diffusion_pytorch_model.safetensors"
        state = load_file(file)
        del state["quantize.embedding.weight"]
        save_file(state, file)
    return repo


def reference_k3(repo: Path, pipeline: str = "Kandinsky3Pipeline", scheduler=None):
    """The diffusers K3 pipeline loaded back from the saved repo (eval mode), optionally another scheduler."""
    import diffusers

    pipe = getattr(diffusers, pipeline).from_pretrained(repo)
    if scheduler is not None:
        pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)
    return pipe
