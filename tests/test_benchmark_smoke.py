"""benchmarks/bench.py end to end on its tiny preset (CPU, seconds): the script works, prints the ratio
table, writes its JSON, and ours matches diffusers on the same weights inside the benchmark."""
import json

from benchmarks import bench


def test_bench_cpu_tiny(tmp_path, capsys):
    out_json = tmp_path / "results.json"
    results = bench.run([
        "--device", "cpu", "--preset", "tiny", "--prior-steps", "2", "--decoder-steps", "2", "--iters", "1",
        "--warmup", "0", "--rounds", "1", "--matmul-size", "128", "--modes", "gpu,lowvram",
        "--work-dir", str(tmp_path / "repos"),
        "--json", str(out_json),
    ])
    table = capsys.readouterr().out
    assert "| metric | ours | diffusers | ours/diffusers |" in table
    for row in ("load weights -> device (s)", "UNet step 64px, batch 2 (ms) [eager]",
                "UNet step 64px, batch 2 (ms) [channels_last]", "t2i 64px end-to-end (s) [eager]",
                "t2i 64px, our memory mode lowvram (s)"):
        assert f"| {row} |" in table, row

    assert results["unet_tflop_per_forward"][64] > 0
    for key, pair in results["unet"].items():
        assert pair["ours"]["seconds"] > 0 and pair["diffusers"]["seconds"] > 0
        assert (pair["ours"]["output"] - pair["diffusers"]["output"]).abs().max() <= 1e-4, key
    pair = results["e2e"][("eager", 64)]
    image, reference = pair["ours"]["output"], pair["diffusers"]["output"]
    assert image.shape == reference.shape == (1, 64, 64, 3)
    assert (image - reference).abs().max() <= 1e-4
    assert bench.cosine_distance(image, reference) <= 1e-6
    for mode in ("gpu", "lowvram"):
        assert (results["modes"][mode]["image"] - image).abs().max() <= 1e-6

    saved = json.loads(out_json.read_text())
    assert saved["preset"] == "tiny" and saved["ours"]["load_seconds"] > 0


def test_cuda_graph_step_wrapper_forwards_calls_and_attributes():
    """The wrapper optimize puts around CUDA-graph compiled models (checked here without compiling)."""
    import torch

    from kandinsky_core import optimize

    linear = torch.nn.Linear(3, 2)
    wrapped = optimize._NewStepPerCall(linear)
    x = torch.randn(4, 3)
    assert torch.equal(wrapped(x), linear(x))
    assert wrapped.in_features == 3 and wrapped.weight is linear.weight
    assert optimize._eager(wrapped) is linear
