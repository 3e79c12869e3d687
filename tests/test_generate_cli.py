"""The README's main job: command-line generation on tiny repos."""
import numpy as np
import pytest
from PIL import Image

from kandinsky_core.generate import main
from tiny_models.repos import build_decoder_repo, build_prior_repo


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return build_prior_repo(root / "prior"), build_decoder_repo(root / "dec", "decoder22")


def test_text_to_image_and_img2img(repos, tmp_path):
    prior, dec = repos
    out = tmp_path / "t2i.png"
    args = ["--prior", str(prior), "--decoder", str(dec), "--prompt", "horse", "--width", "72", "--height", "40",
            "--steps", "2", "--prior-steps", "2", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    assert Image.open(out).size == (72, 40)
    out2 = tmp_path / "i2i.png"
    assert main(args[:-1] + [str(out2), "--init-image", str(out), "--denoise", "0.5"]) == 0
    assert np.asarray(Image.open(out2)).shape == (40, 72, 3)


def test_bad_input_exits_nonzero(repos, tmp_path, caplog):
    prior, dec = repos
    args = ["--prior", str(dec), "--decoder", str(dec), "--prompt", "x", "--device", "cpu",
            "--out", str(tmp_path / "x.png")]
    assert main(args) == 1
    assert "not a prior" in caplog.text


@pytest.fixture(scope="module")
def k3_repo(tmp_path_factory):
    import shutil

    from tiny_models.k3 import build_k3_repo

    root = tmp_path_factory.mktemp("cli3")
    shutil.move(str(build_k3_repo(root / "build")), str(root / "kandinsky-3"))  # the README's folder name
    return root / "kandinsky-3"


def test_kandinsky3_folder_without_prior(k3_repo, tmp_path):
    out = tmp_path / "k3.png"
    args = ["--decoder", str(k3_repo), "--prompt", "a red cat", "--width", "32", "--height", "16", "--steps", "2",
            "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    assert Image.open(out).size == (32, 16)
    out2 = tmp_path / "k3_i2i.png"
    assert main(args[:-1] + [str(out2), "--init-image", str(out), "--denoise", "0.5", "--dtype", "fp8_e4m3fn",
                             "--memory-mode", "lowvram", "--negative-prompt", "blurry"]) == 0
    assert np.asarray(Image.open(out2)).shape == (16, 32, 3)


def test_kandinsky3_cli_errors(k3_repo, repos, tmp_path, caplog):
    prior, dec = repos
    common = ["--prompt", "x", "--device", "cpu", "--steps", "2", "--out", str(tmp_path / "x.png")]
    assert main(["--decoder", str(k3_repo), "--prior", str(prior), *common]) == 1
    assert "Kandinsky 3 has no prior" in caplog.text
    assert main(["--decoder", str(dec), *common]) == 1
    assert "give its prior with --prior" in caplog.text
    assert main(["--decoder", str(dec), "--prior", str(prior), "--dtype", "fp8_e4m3fn", *common]) == 1
    assert "Kandinsky 3 only" in caplog.text
