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
