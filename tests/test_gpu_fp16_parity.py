"""fp16 on a GPU: ours vs diffusers on the full-size random-weight Kandinsky 2.2 models of the benchmark
(same safetensors files, same CPU-generator seed). Images must agree within diffusers' own fp16 tolerance:
cosine distance <= 1e-3. Skipped without CUDA (build: ~10 GB of fp16 weights in a temp folder)."""
import gc

import pytest
import torch

from benchmarks import bench
from benchmarks.build_models import FULL, build_repos

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SIDE = 512
MAX_COSINE_DISTANCE = 1e-3


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    return build_repos(FULL, tmp_path_factory.mktemp("full_fp16"), dtype=torch.float16, device="cuda")


@pytest.fixture(scope="module")
def args():
    return bench.parse_args(["--device", "cuda", "--preset", "full", "--dtype", "fp16", "--movq-dtype", "fp16"])


def _run(cls, args, repos, fn):
    impl = cls(args, *repos, torch.device("cuda"))
    with torch.no_grad():
        out = fn(impl)
    del impl
    gc.collect()
    torch.cuda.empty_cache()
    return out


def test_unet_step_fp16_matches_diffusers(args, repos):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, SIDE // 8, SIDE // 8, generator=g).cuda().half()
    e = torch.randn(2, 1280, generator=g).cuda().half()
    t = torch.tensor(501, device="cuda")
    ours = _run(bench.Ours, args, repos, lambda impl: impl.unet_fn(bench.SpeedOptions())(x, t, e).float().cpu())
    ref = _run(bench.Diffusers, args, repos, lambda impl: impl.unet_fn(bench.SpeedOptions())(x, t, e).float().cpu())
    assert torch.isfinite(ref).all() and torch.isfinite(ours).all()
    assert bench.cosine_distance(ours, ref) <= MAX_COSINE_DISTANCE


def test_t2i_fp16_matches_diffusers(args, repos):
    ours = _run(bench.Ours, args, repos, lambda impl: impl.t2i(SIDE, 5, 10))
    ref = _run(bench.Diffusers, args, repos, lambda impl: impl.t2i(SIDE, 5, 10))
    assert ours.shape == ref.shape == (1, SIDE, SIDE, 3)
    assert torch.isfinite(ours).all()
    assert bench.cosine_distance(ours, ref) <= MAX_COSINE_DISTANCE
