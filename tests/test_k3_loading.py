"""Kandinsky 3 repo loading: strict keys in every component, tokenizer folder, T5 specifics (tied embeddings,
fp16 safeguards, shards, fp16 variant), wrong folders. Each failure leaves the next load working."""
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models.k3 import build_k3_repo

from kandinsky_core.loading.components import load_decoder, load_prior, load_text_encoder
from kandinsky_core.loading.strict import CheckpointMismatchError
from kandinsky_core.models import t5

PROMPTS = ["A painting of a squirrel eating a burger", "red cat"]

WEIGHTS = {  # component -> (weight file, a key to break, loader)
    "unet": ("diffusion_pytorch_model.safetensors", "down_blocks.1.attentions.1.attention.to_k.weight", load_decoder),
    "movq": ("diffusion_pytorch_model.safetensors", "decoder.conv_out.weight", load_decoder),
    "text_encoder": ("model.safetensors", "encoder.block.1.layer.1.DenseReluDense.wo.weight", load_text_encoder),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return build_k3_repo(tmp_path_factory.mktemp("k3load"))


def _copy(repo, tmp_path):
    return shutil.copytree(repo, tmp_path / "kandinsky-3")


def _edit(path, change):
    state = load_file(str(path))
    change(state)
    save_file(state, str(path))


def _encode(models):
    return t5.encode(models.text_encoder, models.tokenizer, PROMPTS)[0]


@pytest.mark.parametrize("component", list(WEIGHTS))
@pytest.mark.parametrize("mismatch", ["missing", "unexpected", "mis-shaped"])
def test_key_mismatch_names_component_and_key(repo, tmp_path, component, mismatch):
    file, key, load = WEIGHTS[component]
    bad = _copy(repo, tmp_path)

    def change(state):
        if mismatch == "missing":
            del state[key]
        elif mismatch == "unexpected":
            state[key.replace("weight", "extra")] = torch.zeros(1)
        else:
            state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)

    _edit(bad / component / file, change)
    named = key.replace("weight", "extra") if mismatch == "unexpected" else key
    with pytest.raises(CheckpointMismatchError, match=f"'{component}'") as err:
        load(bad)
    assert named in str(err.value)
    assert load(repo) is not None  # the next load works


@pytest.mark.parametrize("how", ["removed", "emptied"])
def test_missing_tokenizer(repo, tmp_path, how):
    bad = _copy(repo, tmp_path)
    if how == "removed":
        shutil.rmtree(bad / "tokenizer")
    else:
        for f in (bad / "tokenizer").iterdir():
            f.unlink()
    with pytest.raises(ValueError, match="tokenizer"):
        load_text_encoder(bad)
    assert load_text_encoder(repo).version == "3"


def test_k3_folder_in_the_prior_loader(repo):
    with pytest.raises(ValueError, match=r"Kandinsky 3 decoder repo.*not a prior.*text encoder loader"):
        load_prior(repo)


def test_2x_folder_in_the_text_encoder_loader(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "KandinskyV22Pipeline"}')
    with pytest.raises(ValueError, match="takes a Kandinsky 3 repo folder"):
        load_text_encoder(tmp_path)


def test_bundles(repo):
    text_encoder = load_text_encoder(repo, torch.bfloat16)
    unet, movq = load_decoder(repo)
    assert (text_encoder.version, unet.version, movq.version) == ("3", "3", "3")
    assert unet.variant.name == "Kandinsky 3 text2img UNet" and unet.variant.task == "text2img"
    assert unet.latent_multiple == 2 and text_encoder.hidden_size == 32
    assert movq.movq.quantize is None  # the K3 MoVQ has no codebook
    assert text_encoder.text_encoder.shared.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("keep", ["shared.weight", "encoder.embed_tokens.weight", "both"])
def test_tied_t5_embeddings_either_or_both(repo, tmp_path, keep):
    bad = _copy(repo, tmp_path)
    path = bad / "text_encoder" / "model.safetensors"
    state = load_file(str(path))
    embedding = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    state.pop("shared.weight", None)
    state.pop("encoder.embed_tokens.weight", None)
    for key in (("shared.weight", "encoder.embed_tokens.weight") if keep == "both" else (keep,)):
        state[key] = embedding.clone()
    save_file(state, str(path))
    got = load_text_encoder(bad)
    model = got.text_encoder
    assert model.encoder.embed_tokens.weight.data_ptr() == model.shared.weight.data_ptr()
    assert torch.equal(_encode(got), _encode(load_text_encoder(repo)))


def test_fp16_keeps_wo_in_fp32_and_stays_finite(repo):
    full = load_text_encoder(repo)
    half = load_text_encoder(repo, torch.float16)
    dtypes = {name: p.dtype for name, p in half.text_encoder.named_parameters()}
    assert all(d == torch.float32 for n, d in dtypes.items() if ".wo." in n)
    assert all(d == torch.float16 for n, d in dtypes.items() if ".wo." not in n)
    got = _encode(half)
    assert torch.isfinite(got).all()
    assert (got.float() - _encode(full)).abs().max() < 5e-2


def test_sharded_and_fp16_variant_text_encoder(repo, tmp_path):
    from transformers import T5EncoderModel

    reference = _encode(load_text_encoder(repo))
    sharded = _copy(repo, tmp_path)
    model = T5EncoderModel.from_pretrained(repo / "text_encoder")
    shutil.rmtree(sharded / "text_encoder")
    model.save_pretrained(sharded / "text_encoder", max_shard_size="20KB")
    assert (sharded / "text_encoder" / "model.safetensors.index.json").is_file()
    assert torch.equal(_encode(load_text_encoder(sharded)), reference)

    variant = tmp_path / "variant"
    shutil.copytree(repo, variant)
    (variant / "text_encoder" / "model.safetensors").rename(variant / "text_encoder" / "model.fp16.safetensors")
    assert torch.equal(_encode(load_text_encoder(variant)), reference)


def test_tokenizer_from_spiece_model_only(tmp_path):
    """A tokenizer folder with only spiece.model (no tokenizer.json) loads too."""
    import io

    spm = pytest.importorskip("sentencepiece")
    words = "a painting of a squirrel eating a burger red cat dog photo blurry low quality".split()
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 20
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model, vocab_size=60,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    (tmp_path / "spiece.model").write_bytes(model.getvalue())
    tokenizer = t5.load_t5_tokenizer(tmp_path)
    ids = tokenizer(["a red cat"], padding="max_length", max_length=8).input_ids[0]
    eos = ids.index(1)  # word pieces, </s>, then <pad>; no <unk>
    assert eos >= 1 and 2 not in ids[:eos] and ids[eos + 1:] == [0] * (len(ids) - eos - 1)
