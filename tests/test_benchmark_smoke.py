"""benchmarks/bench.py end to end on its tiny preset (CPU, seconds): the script works, prints the ratio
table, writes its JSON, and ours matches diffusers on the same weights inside the benchmark."""
import json

import torch

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


def test_bench_k3_cpu_tiny(tmp_path, capsys):
    """bench.py --model 3 on the tiny K3 preset: ours equals Kandinsky3Pipeline on the same weights, and the
    memory rows run (here fp8 encoder and UNet, streamed: lowvram) and stay close to the baseline."""
    results = bench.run([
        "--model", "3", "--device", "cpu", "--preset", "tiny", "--repeats", "1",
        "--memory-configs", "fp8_lowvram", "--work-dir", str(tmp_path / "repo"),
        "--json", str(tmp_path / "k3.json"),
    ])
    table = capsys.readouterr().out
    for row in ("load weights -> device (s)", "K3 t2i 64px end-to-end (s)",
                "ours, fp8_lowvram: s per image (vs baseline)", "ours, fp8_lowvram: encoder (s) (vs baseline)"):
        assert f"| {row} |" in table, row
    pair = results["e2e"][64]
    # 64 px asks for 8x8 latents (the real MoVQ's factor 8); the tiny MoVQ's factor 2 decodes them to 16 px
    assert pair["ours"]["output"].shape == pair["diffusers"]["output"].shape == (1, 16, 16, 3)
    assert (pair["ours"]["output"] - pair["diffusers"]["output"]).abs().max() <= 1e-4
    memory = results["memory"]
    assert torch.equal(memory["baseline"]["image"], pair["ours"]["output"])
    assert 0 < (memory["fp8_lowvram"]["image"] - memory["baseline"]["image"]).abs().mean() < 0.05
    assert json.loads((tmp_path / "k3.json").read_text())["preset"] == "tiny"
