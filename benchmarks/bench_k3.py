"""Kandinsky 3: ours vs diffusers' Kandinsky3Pipeline on the same random-weight repo, measured in one run.

Run through `python benchmarks/bench.py --model 3 ...` (or this file). Sections:
* load: weights from the safetensors files onto the device (ours: T5 + UNet + MoVQ; diffusers: the pipeline).
* e2e: text-to-image with a negative prompt per image size, both implementations alternating, best of N;
  peak device memory; the images compared (max abs diff, cosine distance).
* memory (ours, largest size): the encoder in the run's dtype vs fp8_e4m3fn (encoder seconds and seconds
  per image), fp8 encoder + UNet with model_offload, and lowvram; peak device memory of each. These are
  the issue's targets: 1024 x 1024 within 12 GiB, and the fp8 encoder at most 10 % slower per image.

Presets: "full" (the published sizes: Flan-UL2 encoder 8.7 B, UNet 3.0 B, MoVQ 0.27 B; 1024 px; needs a GPU),
"cpu" (reduced widths, runs in minutes on 2 CPU cores; see CPU_K3.reduced), "tiny" (the test models, seconds).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from benchmarks import bench  # noqa: E402
from benchmarks.build_models import _movq_kwargs, weight_files  # noqa: E402
from kandinsky_core import fp8  # noqa: E402
from kandinsky_core.configs.movq import K2_MOVQ, K3_MOVQ  # noqa: E402
from kandinsky_core.configs.unet3 import K3_UNET  # noqa: E402
from kandinsky_core.loading.components import load_decoder, load_text_encoder  # noqa: E402
from kandinsky_core.runtime import DTYPES, LocalRuntime  # noqa: E402
from kandinsky_core.stages import decoder as decoder_stage  # noqa: E402
from kandinsky_core.stages import movq as movq_stage  # noqa: E402
from kandinsky_core.stages import text3  # noqa: E402
from tiny_models.movq import movq_config  # noqa: E402

logger = logging.getLogger("benchmarks.bench_k3")

PROMPT, NEGATIVE = "a red cat with a hat, oil painting", "low quality, blurry"
GUIDANCE = 3.0
SEED = 0
K3_DDPM = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, steps_offset=1,
               beta_schedule="squaredcos_cap_v2", clip_sample=True, thresholding=False)
FLAN_UL2 = dict(  # google/flan-ul2's encoder (kandinsky-3/text_encoder/config.json sizes)
    vocab_size=32128, d_model=4096, d_kv=256, d_ff=16384, num_layers=32, num_heads=16,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-silu",
    dropout_rate=0.0, layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    is_encoder_decoder=False, use_cache=False,
)


def _unet_kwargs(config) -> dict:
    kwargs = dataclasses.asdict(config)
    kwargs.pop("out_channels")  # ours only (diffusers predicts in_channels)
    return kwargs


@dataclass(frozen=True)
class K3Preset:
    name: str
    unet: dict  # diffusers Kandinsky3UNet kwargs
    t5: dict  # transformers T5Config kwargs
    movq: dict  # diffusers VQModel kwargs
    e2e_sizes: tuple[int, ...]  # image sides (px), multiples of 64
    steps: int  # decoder steps end-to-end (diffusers' default is 25)
    reduced: str = ""


FULL_K3 = K3Preset("full", _unet_kwargs(K3_UNET), FLAN_UL2, _movq_kwargs(K3_MOVQ), (1024,), 25,
                   "none (published Kandinsky 3 sizes)")
CPU_K3 = K3Preset(
    "cpu",
    _unet_kwargs(dataclasses.replace(K3_UNET, block_out_channels=(64, 128, 256, 512), time_embedding_dim=256,
                                     cross_attention_dim=512, encoder_hid_dim=512)),
    {**FLAN_UL2, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 4, "num_heads": 8},
    _movq_kwargs(dataclasses.replace(K2_MOVQ, block_out_channels=(32, 64, 64, 128))),
    (128, 256), 4,
    "UNet widths 1/6 (64,128,256,512), time embedding 256, context 512, depth/heads as published; T5 4 layers "
    "of width 512 (8 heads of 64, gated-SiLU FFN 2048, Flan-UL2 vocabulary); MoVQ widths (32,64,64,128); "
    "128/256 px, 4 steps",
)
TINY_K3 = K3Preset(
    "tiny",
    dict(in_channels=4, time_embedding_dim=4, groups=2, attention_head_dim=4, layers_per_block=3,
         block_out_channels=(32, 64), cross_attention_dim=4, encoder_hid_dim=32),
    dict(vocab_size=256, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
         feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
         is_encoder_decoder=False, use_cache=False),
    movq_config("2level"),  # diffusers' dummy 2-level MoVQ (spec §5.1)
    (64,), 2, "diffusers' dummy K3 UNet and MoVQ, a 2-layer T5 of width 32, 64 px",
)
K3_PRESETS = {p.name: p for p in (FULL_K3, CPU_K3, TINY_K3)}


def build_k3_repo(preset: K3Preset, root: str | Path, *, dtype: torch.dtype, device, seed: int = SEED) -> Path:
    """`root/kandinsky-3` in diffusers layout with seeded random weights in `dtype` (reused if already built)."""
    import diffusers
    from tiny_models.k3 import make_t5_tokenizer
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    root = Path(root)
    repo, marker = root / "kandinsky-3", root / "build.json"
    stamp = json.loads(json.dumps({"preset": dataclasses.asdict(preset), "dtype": str(dtype), "seed": seed}))
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        logger.info("Reusing the %s K3 repo in %s", preset.name, root)
        return repo
    root.mkdir(parents=True, exist_ok=True)
    with torch.device(device):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(T5Config(**preset.t5)).to(dtype).eval()
        torch.manual_seed(seed + 1)
        unet = diffusers.Kandinsky3UNet(**preset.unet).to(dtype).eval()
        torch.manual_seed(seed + 2)
        movq = diffusers.VQModel(**preset.movq).to(dtype).eval()
    pipe = diffusers.Kandinsky3Pipeline(
        tokenizer=T5TokenizerFast.from_pretrained(str(make_t5_tokenizer(root / "_tokenizer"))),
        text_encoder=text_encoder, unet=unet, scheduler=diffusers.DDPMScheduler(**K3_DDPM), movq=movq)
    pipe.save_pretrained(repo)
    del pipe, text_encoder, unet, movq
    bench._free(torch.device(device))
    marker.write_text(json.dumps(stamp))
    return repo


class OursK3:
    label = "ours"

    def __init__(self, repo: Path, device: torch.device, dtype: torch.dtype, movq_dtype: torch.dtype,
                 encoder: str = "same", unet: str = "same", mode: str = "gpu"):
        """`encoder` / `unet`: "same" (the run's dtype) or "fp8" (fp8_e4m3fn storage, computed in the run's dtype)."""
        self.runtime = LocalRuntime(device, memory_mode=mode)
        self.text_encoder = load_text_encoder(repo, dtype)
        if encoder == "fp8":
            fp8.store_fp8(self.text_encoder.text_encoder)
        self.unet, self.movq = load_decoder(repo, dtype, movq_dtype=movq_dtype)
        if unet == "fp8":
            fp8.store_unet_fp8(self.unet)
        if mode == "gpu":
            self.runtime.load(self.text_encoder.modules() + self.unet.modules() + self.movq.modules())

    def encode(self):
        return text3.encode_prompts(self.text_encoder, [PROMPT], NEGATIVE, self.runtime)

    def t2i(self, side: int, steps: int):
        latent = torch.zeros(1, 4, side // 8, side // 8)
        latents = decoder_stage.sample(self.unet, self.encode(), latent, generator=torch.Generator().manual_seed(SEED),
                                       steps=steps, guidance_scale=GUIDANCE, runtime=self.runtime)
        return movq_stage.decode(self.movq, latents, runtime=self.runtime)  # B, H, W, 3 in [0, 1] on the CPU

    def close(self) -> None:
        self.runtime.offload_all()


class DiffusersK3:
    label = "diffusers"

    def __init__(self, repo: Path, device: torch.device, dtype: torch.dtype):
        import diffusers

        self.pipe = diffusers.Kandinsky3Pipeline.from_pretrained(repo, torch_dtype=dtype).to(device)
        self.pipe.set_progress_bar_config(disable=True)

    def t2i(self, side: int, steps: int):
        image = self.pipe(PROMPT, negative_prompt=NEGATIVE, height=side, width=side, num_inference_steps=steps,
                          guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(SEED), output_type="np").images
        return torch.from_numpy(image)


def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="3", help="(bench.py's switch; always 3 here)")
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--preset", choices=sorted(K3_PRESETS), help="default: full on cuda, cpu on cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="default: fp16 on cuda (as the kandinsky-3 fp16 "
                                                           "variant), fp32 on cpu")
    p.add_argument("--movq-dtype", choices=sorted(DTYPES), help="our MoVQ (default: the run's dtype)")
    p.add_argument("--sections", default="e2e,memory", help="comma list of e2e, memory (load always runs)")
    p.add_argument("--e2e-sizes", help="comma list of image sides (multiples of 64; default: the preset's)")
    p.add_argument("--steps", type=int, help="decoder steps (default: the preset's)")
    p.add_argument("--repeats", type=int, help="alternating end-to-end runs per size, best taken (default 3 cuda, 1 cpu)")
    p.add_argument("--memory-configs", default="encoder_fp8,fp8_model_offload,fp8_lowvram",
                   help="comma list of our memory configurations (the run's dtype is always the baseline)")
    p.add_argument("--work-dir", help="where the random-weight repo is built (reused across runs)")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    args.preset = args.preset or ("full" if args.device.startswith("cuda") else "cpu")
    args.dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")
    args.movq_dtype = args.movq_dtype or args.dtype
    args.repeats = args.repeats or (3 if args.device.startswith("cuda") else 1)
    return args


MEMORY_CONFIGS = {  # name -> OursK3 keyword arguments
    "baseline": dict(),
    "encoder_fp8": dict(encoder="fp8"),
    "fp8_model_offload": dict(encoder="fp8", unet="fp8", mode="model_offload"),
    "fp8_lowvram": dict(encoder="fp8", unet="fp8", mode="lowvram"),
    "model_offload": dict(mode="model_offload"),
    "lowvram": dict(mode="lowvram"),
}


def bench_memory(repo: Path, args, device, dtype, movq_dtype, side: int, steps: int, configs: list[str]) -> dict:
    """Ours alone per configuration (fresh models, nothing else on the device): encoder s, s per image, peak GiB."""
    results = {}
    for name in ["baseline", *configs]:
        ours = OursK3(repo, device, dtype, movq_dtype, **MEMORY_CONFIGS[name])
        bench._reset_peak(device)
        encoder_runs = [bench._timed(ours.encode, device)[0] for _ in range(args.repeats)]
        runs = [bench._timed(lambda: ours.t2i(side, steps), device) for _ in range(args.repeats)]
        results[name] = {"encoder_seconds": min(encoder_runs), "seconds": min(s for s, _ in runs),
                         "peak_gib": bench._peak(device), "image": runs[-1][1]}
        ours.close()
        del ours
        bench._free(device)
    return results


def run(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    preset = K3_PRESETS[args.preset]
    if args.e2e_sizes:
        sizes = tuple(int(v) for v in args.e2e_sizes.split(","))
        if any(v % 64 for v in sizes):
            raise SystemExit(f"--e2e-sizes: image sides must be multiples of 64, got {args.e2e_sizes}")
        preset = dataclasses.replace(preset, e2e_sizes=sizes)
    steps = args.steps or preset.steps
    dtype, movq_dtype = DTYPES[args.dtype], DTYPES[args.movq_dtype]
    sections = set(args.sections.split(","))
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / "kandinsky-bench" / f"k3-{preset.name}-{args.dtype}")

    bench._quiet_libraries()
    build_seconds, repo = bench._timed(lambda: build_k3_repo(preset, work, dtype=dtype, device=device), device)
    bench._warm_page_cache(weight_files(repo))
    results: dict = {"args": vars(args), "env": bench.environment(device), "preset": preset.name,
                     "reduced": preset.reduced, "build_seconds": build_seconds, "steps": steps}

    impls, weights = {}, {}
    for label, make in (("ours", lambda: OursK3(repo, device, dtype, movq_dtype)),
                        ("diffusers", lambda: DiffusersK3(repo, device, dtype))):
        before = bench._allocated(device)
        seconds, impls[label] = bench._timed(make, device)
        after = bench._allocated(device)
        weights[label] = None if after is None else after - before
        results[label] = {"load_seconds": seconds, "weights_gib": weights[label]}
    if "e2e" in sections:
        results["e2e"] = {side: bench._pair({k: (lambda i=i, s=side: i.t2i(s, steps)) for k, i in impls.items()},
                                            args.repeats, device, weights) for side in preset.e2e_sizes}
    impls["ours"].close()
    del impls
    bench._free(device)
    if "memory" in sections:
        configs = [c for c in args.memory_configs.split(",") if c]
        unknown = set(configs) - set(MEMORY_CONFIGS)
        if unknown:
            raise SystemExit(f"--memory-configs: unknown {sorted(unknown)}; choose from {sorted(MEMORY_CONFIGS)}")
        results["memory"] = bench_memory(repo, args, device, dtype, movq_dtype, max(preset.e2e_sizes), steps, configs)
    table = format_table(results, args)
    print(table)
    results["table"] = table
    if args.json:
        Path(args.json).write_text(json.dumps(bench._jsonable(results), indent=2))
    return results


def format_table(results: dict, args) -> str:
    fmt, ratio = bench._fmt, bench._ratio
    ours, theirs = results["ours"], results["diffusers"]
    rows = [("load weights -> device (s)", ours["load_seconds"], theirs["load_seconds"], ".2f")]
    if ours["weights_gib"] is not None:
        rows.append(("weights on device (GiB)", ours["weights_gib"], theirs["weights_gib"], ".2f"))
    notes = []
    for side, pair in results.get("e2e", {}).items():
        a, b = pair["ours"], pair["diffusers"]
        rows.append((f"K3 t2i {side}px end-to-end (s)", a["seconds"], b["seconds"], ".2f"))
        if a["peak_gib"] is not None:
            rows.append((f"K3 t2i {side}px peak memory (GiB)", a["peak_gib"], b["peak_gib"], ".2f"))
        diff = (a["output"] - b["output"]).abs().max().item()
        notes.append(f"K3 t2i {side}px image ours vs diffusers: cosine distance "
                     f"{bench.cosine_distance(a['output'], b['output']):.1e}, max abs diff {diff:.1e}")
    memory = results.get("memory", {})
    base = memory.get("baseline")
    for name, r in memory.items():
        label = "ours, encoder and UNet " + args.dtype if name == "baseline" else f"ours, {name}"
        rows.append((f"{label}: encoder (s) (vs baseline)", r["encoder_seconds"], base["encoder_seconds"], ".3f"))
        rows.append((f"{label}: s per image (vs baseline)", r["seconds"], base["seconds"], ".2f"))
        if r["peak_gib"] is not None:
            rows.append((f"{label}: peak memory (GiB) (vs baseline)", r["peak_gib"], base["peak_gib"], ".2f"))
        if name != "baseline":
            diff = (r["image"] - base["image"]).abs()
            notes.append(f"{name} image vs baseline: mean abs diff {diff.mean().item():.1e}, max {diff.max().item():.1e}")
    env = results["env"]
    side = max(results.get("e2e", {}) or [0])
    head = [
        f"Kandinsky 3 benchmark: preset {results['preset']} ({results['reduced']}); {args.dtype} (our MoVQ "
        f"{args.movq_dtype}); device {env.get('gpu', env['cpu'])} ({args.device}); torch {env['torch']}, diffusers "
        f"{env['diffusers']}, transformers {env['transformers']}; {env['threads']} CPU threads; load average at "
        f"start {env.get('load_average', '-')}.",
        f"Text-to-image with a negative prompt, {results['steps']} DDPM steps, guidance {GUIDANCE}; best of "
        f"{args.repeats} alternating runs. Memory rows: ours alone at the largest size{f' ({side}px)' if side else ''}"
        ", fresh models per configuration, the last column is the baseline (encoder and UNet in the run's dtype, "
        "all on the device), not diffusers.",
        "",
        "| metric | ours | diffusers / baseline | ratio |",
        "|---|---|---|---|",
    ]
    for name, a, b, spec in rows:
        head.append(f"| {name} | {fmt(a, spec)} | {fmt(b, spec)} | {ratio(a, b)} |")
    return "\n".join(head + [""] + notes)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run(argv)


if __name__ == "__main__":
    main()
