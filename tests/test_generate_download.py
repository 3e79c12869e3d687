"""python -m kandinsky_core.generate --download against a local fake Hub (tests/fake_hub.py), progress, --quiet.

Without --download nothing touches the network and a missing folder is an error showing both ways to get
it; with it, the command fetches the 2.2 prior and decoder into their folders, skips complete folders,
and a rerun after a failed download fetches only what is missing.
"""

import shutil

import pytest
from PIL import Image

from fake_hub import FakeHub
from kandinsky_core import download
from kandinsky_core.generate import main
from tiny_models.repos import build_decoder_repo, build_prior_repo

PRIOR, DECODER = "kandinsky-community/kandinsky-2-2-prior", "kandinsky-community/kandinsky-2-2-decoder"
FAST = ["--prompt", "horse", "--width", "32", "--height", "32", "--steps", "2", "--prior-steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    for repo, build in ((PRIOR, build_prior_repo), (DECODER, lambda p: build_decoder_repo(p, "decoder22"))):
        (root / repo).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(build(root.parent / "build" / repo)), str(root / repo))
    (root / DECODER / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"a second format, never fetched")
    (root / DECODER / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"a variant, never fetched")
    return root


@pytest.fixture()
def hub(hub_root, monkeypatch):
    server = FakeHub(hub_root)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(hub_root.parent / "hf-home"))
    monkeypatch.setattr("huggingface_hub.file_download.time.sleep", lambda s: None)  # the hub's retry pauses
    yield server
    server.close()


def command(models, out, *extra):
    return ["--prior", str(models / "kandinsky-2-2-prior"), "--decoder", str(models / "kandinsky-2-2-decoder"),
            *FAST, "--out", str(out), *extra]


def test_missing_folder_without_download_touches_no_network(hub, tmp_path, caplog):
    assert main(command(tmp_path / "models", tmp_path / "x.png")) == 1
    assert hub.requests == []
    assert "Add --download to fetch them" in caplog.text
    assert f"hf download {PRIOR} --local-dir {tmp_path / 'models' / 'kandinsky-2-2-prior'}" in caplog.text
    assert f"hf download {DECODER} --local-dir {tmp_path / 'models' / 'kandinsky-2-2-decoder'}" in caplog.text


def test_download_fetches_the_repos_then_skips_complete_folders(hub, hub_root, tmp_path, capsys):
    models, out = tmp_path / "models", tmp_path / "cat.png"
    assert main(command(models, out, "--download")) == 0
    err = capsys.readouterr().err
    assert "Fetching 11 files: 100%" in err and "Fetching 6 files: 100%" in err  # the hub's progress
    assert "prior: 100%" in err and "decoder: 100%" in err and "2/2" in err  # a bar per stage
    assert Image.open(out).size == (32, 32)
    for repo in (PRIOR, DECODER):
        local = models / repo.split("/")[1]
        assert (local / download.COMPLETE_MARKER).is_file()
        for name in download.wanted_files([p.relative_to(hub_root / repo).as_posix()
                                           for p in (hub_root / repo).rglob("*") if p.is_file()]):
            assert (local / name).read_bytes() == (hub_root / repo / name).read_bytes(), name
    assert sorted(hub.gets(DECODER)) == ["model_index.json", "movq/config.json",
                                         "movq/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                                         "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    hub.requests.clear()
    assert main(command(models, out, "--download", "--quiet")) == 0
    assert hub.requests == []  # complete folders: not even asked
    assert capsys.readouterr().err == ""  # --quiet: no bars (ours, the hub's or transformers'), no log


def test_failed_download_resumes_with_only_the_missing_files(hub, tmp_path, caplog):
    models = tmp_path / "models"
    hub.drop = {"unet/diffusion_pytorch_model.safetensors"}  # the connection drops on the biggest file
    assert main(command(models, tmp_path / "x.png", "--download", "--quiet")) == 1
    assert f"Downloading {DECODER} into" in caplog.text and "Run the same command again to resume" in caplog.text
    assert (models / "kandinsky-2-2-prior" / download.COMPLETE_MARKER).is_file()
    assert not (models / "kandinsky-2-2-decoder" / download.COMPLETE_MARKER).exists()
    assert (models / "kandinsky-2-2-decoder" / "movq" / "diffusion_pytorch_model.safetensors").is_file()
    hub.drop, hub.requests = set(), []
    assert main(command(models, tmp_path / "x.png", "--download", "--quiet")) == 0
    assert hub.gets(PRIOR) == []  # complete
    assert hub.gets(DECODER) == ["unet/diffusion_pytorch_model.safetensors"]  # only what was missing


def test_user_folders_are_never_downloaded_into(hub, tmp_path):
    own = tmp_path / "kandinsky-2-2-prior"
    own.mkdir()
    (own / "model_index.json").write_text("{}")
    download.ensure_repos([own], download=True)  # filled by hand (no hub cache): complete as it is
    assert hub.requests == []
    with pytest.raises(ValueError, match="Cannot tell which Hub repo belongs in"):
        download.ensure_repos([tmp_path / "my-model"], download=True)


def test_wanted_files_pick_one_weight_format_per_folder():
    files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
             "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.safetensors",
             "text_encoder/pytorch_model.bin", "text_encoder/pytorch_model.fp16.bin", "tokenizer/sentencepiece.bpe.model",
             "prior/diffusion_pytorch_model.fp16.safetensors", ".gitattributes", "README.md",
             "unet/diffusion_pytorch_model.safetensors.index.fp16.json"]
    assert download.wanted_files(files) == [
        "README.md", "model_index.json", "prior/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/pytorch_model.bin", "tokenizer/sentencepiece.bpe.model", "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors"]
