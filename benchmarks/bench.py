"""Ours vs diffusers on the same random-weight Kandinsky 2.2 models, measured in one run.

For each implementation: time to load the weights from the safetensors files onto the device, the
decoder UNet forward with guidance (batch 2) per image size, end-to-end text-to-image (prior with a
negative prompt, decoder, MoVQ decode) per size, and peak device memory. The UNet step is also given in
TFLOP/s (FLOPs counted on the meta device; they equal spec §6.2 for the full size) against a large
matrix product measured in the same run. Our memory modes (gpu / model_offload / lowvram) are timed on
the largest end-to-end size. Prints one markdown table with the ratios ours/diffusers.

    python benchmarks/bench.py                       # GPU: full size, fp16; CPU: reduced size, fp32
    python benchmarks/bench.py --device cuda --preset full --dtype fp16 --json results.json
    python benchmarks/bench.py --model 3             # Kandinsky 3 vs Kandinsky3Pipeline (benchmarks/bench_k3.py)

See benchmarks/RESULTS.md for measured tables and what each option does.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.build_models import PRESETS, Preset, build_repos, weight_files  # noqa: E402
from kandinsky_core.loading.components import load_decoder, load_prior  # noqa: E402
from kandinsky_core.models.unet import KandinskyUNet  # noqa: E402
from kandinsky_core.configs.unet import UNetConfig  # noqa: E402
from kandinsky_core.memory import MEMORY_MODES  # noqa: E402
from kandinsky_core.optimize import (SpeedOptions, optimize_decoder, optimize_movq, optimize_prior,  # noqa: E402
                                     to_channels_last, to_contiguous)
from kandinsky_core.payloads import Embeds  # noqa: E402
from kandinsky_core.runtime import DTYPES, LocalRuntime  # noqa: E402
from kandinsky_core.stages import decoder as decoder_stage  # noqa: E402
from kandinsky_core.stages import movq as movq_stage  # noqa: E402
from kandinsky_core.stages import prior as prior_stage  # noqa: E402

logger = logging.getLogger("benchmarks.bench")

PROMPT, NEGATIVE = "a red cat with a hat, oil painting", "low quality, blurry"
GUIDANCE = 4.0
SEED = 0
GIB = 2**30


# --- measuring -----------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def _allocated(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / GIB if device.type == "cuda" else None


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, iters: int) -> float:
    """Achieved TFLOP/s of an n x n x n matrix product (the practical ceiling of dense compute)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    seconds, _ = _timed(lambda: [a @ b for _ in range(iters)], device)
    return 2 * n**3 * iters / seconds / 1e12


def unet_flops(config: UNetConfig, side: int) -> float:
    """FLOPs of one batch-1 UNet forward at `side` px (counted on the meta device; SDPA as matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = KandinskyUNet(config)
        latent = side // 8
        x = torch.empty(1, config.in_channels, latent, latent)
        embeds = torch.empty(1, config.encoder_hid_dim)
        t = torch.tensor(500)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, t, embeds)
    return float(counter.get_total_flops())


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """1 - cos(a, b) of the flattened images (diffusers' numpy_cosine_similarity_distance)."""
    a, b = a.double().flatten(), b.double().flatten()
    return float(1 - (a @ b) / (a.norm() * b.norm()))


def _warm_page_cache(paths: list[Path]) -> None:
    """Read the weight files once so both loaders see a warm page cache (load times then compare CPU work)."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 26):
                pass


# --- ours ----------------------------------------------------------------------------------------

class Ours:
    label = "ours"

    def __init__(self, args, prior_repo: Path, decoder_repo: Path, device: torch.device):
        self.args, self.device = args, device
        dtype, movq_dtype = DTYPES[args.dtype], DTYPES[args.movq_dtype]
        self.runtime = LocalRuntime(device)
        self.prior = self.base_prior = load_prior(prior_repo, dtype)
        self.unet, self.movq = load_decoder(decoder_repo, dtype, movq_dtype=movq_dtype)
        self.base_unet = self.unet
        self._bundles: dict[str, tuple] = {}
        # what the stages load for text-to-image with a negative prompt: the CLIP image tower stays on the CPU
        self.runtime.load([self.prior.prior, self.prior.text_encoder] + self.unet.modules() + self.movq.modules())

    def use(self, options: SpeedOptions) -> None:
        """Run with `options` from now on (compile wrappers are made once per option set and reused)."""
        key = options.label
        if key not in self._bundles:
            self._bundles[key] = (optimize_prior(self.base_prior, options), optimize_decoder(self.base_unet, options))
        self.prior, self.unet = self._bundles[key]
        layout = to_channels_last if options.channels_last else to_contiguous
        layout(self.base_unet.unet)
        optimize_movq(self.movq, options)

    def unet_fn(self, options: SpeedOptions):
        self.use(options)
        model = self.unet.unet
        return lambda x, t, e: model(x, t, e)

    def restore_layout(self) -> None:
        self.use(SpeedOptions())

    def t2i(self, side: int, prior_steps: int, decoder_steps: int, runtime: LocalRuntime | None = None):
        rt = runtime or self.runtime
        embeds = prior_stage.prior_encode(self.prior, PROMPT, NEGATIVE, generator=torch.Generator().manual_seed(SEED),
                                          steps=prior_steps, guidance_scale=GUIDANCE, runtime=rt)
        latent = torch.zeros(1, 4, side // 8, side // 8)
        latents = decoder_stage.sample(self.unet, embeds, latent, generator=torch.Generator().manual_seed(SEED),
                                       steps=decoder_steps, guidance_scale=GUIDANCE, runtime=rt)
        return movq_stage.decode(self.movq, latents, runtime=rt)  # B, H, W, 3 in [0, 1] on the CPU

    def modules(self):
        return self.base_prior.modules() + self.base_unet.modules() + self.movq.modules()


# --- diffusers -----------------------------------------------------------------------------------

class Diffusers:
    label = "diffusers"

    def __init__(self, args, prior_repo: Path, decoder_repo: Path, device: torch.device):
        import diffusers

        dtype = DTYPES[args.dtype]
        self.device = device
        self.prior = diffusers.KandinskyV22PriorPipeline.from_pretrained(prior_repo, torch_dtype=dtype).to(device)
        self.decoder = diffusers.KandinskyV22Pipeline.from_pretrained(decoder_repo, torch_dtype=dtype).to(device)
        for pipe in (self.prior, self.decoder):
            pipe.set_progress_bar_config(disable=True)

    def unet_fn(self, options: SpeedOptions):
        unet = self.decoder.unet
        return lambda x, t, e: unet(sample=x, timestep=t, encoder_hidden_states=None,
                                    added_cond_kwargs={"image_embeds": e}, return_dict=False)[0]

    def t2i(self, side: int, prior_steps: int, decoder_steps: int):
        out = self.prior(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=prior_steps, guidance_scale=GUIDANCE,
                         generator=torch.Generator().manual_seed(SEED))
        image = self.decoder(image_embeds=out.image_embeds, negative_image_embeds=out.negative_image_embeds,
                             height=side, width=side, num_inference_steps=decoder_steps, guidance_scale=GUIDANCE,
                             generator=torch.Generator().manual_seed(SEED), output_type="pt").images
        return (image.float() * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()  # as our MoVQ decode stage


# --- sections ------------------------------------------------------------------------------------
# Both implementations stay loaded and every measurement alternates between them (ours first in even
# rounds, diffusers first in odd ones), so drifting clocks or a busy machine bias both alike. Peak memory
# per implementation = its own weights + (peak during its call - memory allocated before the call).

def _pair(fns: dict, rounds: int, device: torch.device, weights: dict) -> dict:
    """Best seconds (least disturbed round), activation GiB, peak GiB, last output of each fn over alternating rounds."""
    times = {k: [] for k in fns}
    activation = {k: 0.0 for k in fns}
    outputs = {}
    order = list(fns)
    for r in range(rounds):
        for key in (order if r % 2 == 0 else order[::-1]):
            base = _allocated(device)
            _reset_peak(device)
            seconds, outputs[key] = _timed(fns[key], device)
            times[key].append(seconds)
            if base is not None:
                activation[key] = max(activation[key], _peak(device) - base)
    cuda = device.type == "cuda"
    return {k: {"seconds": min(times[k]), "all_seconds": times[k], "output": outputs[k],
                "activation_gib": activation[k] if cuda else None,
                "peak_gib": weights[k] + activation[k] if cuda else None} for k in fns}


def _repeat(fn, n: int):
    """Call fn n times, keeping only the last output alive (CUDA-graph outputs are reused between calls)."""
    out = None
    for _ in range(n):
        out = None
        out = fn()
    return out


def bench_unet(ours: "Ours", theirs: "Diffusers", preset: Preset, args, device, dtype, variants, flops,
               weights) -> dict:
    """UNet forward at batch 2 (one guided step) per variant of ours and size, each paired with diffusers."""
    results = {}
    embed_dim = preset.unet["encoder_hid_dim"]
    t = torch.tensor(501, device=device)
    reference = theirs.unet_fn(SpeedOptions())
    for options in variants:
        mine = ours.unet_fn(options)
        for side in preset.step_sizes:
            g = torch.Generator().manual_seed(side)
            x = torch.randn(2, 4, side // 8, side // 8, generator=g).to(device, dtype)
            e = torch.randn(2, embed_dim, generator=g).to(device, dtype)
            fns = {"ours": lambda f=mine: f(x, t, e), "diffusers": lambda: reference(x, t, e)}
            with torch.no_grad():
                for _ in range(args.warmup):
                    [fn() for fn in fns.values()]
                many = {k: (lambda fn=fn: _repeat(fn, args.iters)) for k, fn in fns.items()}
                pair = _pair(many, args.rounds, device, weights)
            for k in pair:
                pair[k]["seconds"] /= args.iters
                pair[k]["tflops"] = 2 * flops[side] / pair[k]["seconds"] / 1e12
                pair[k]["output"] = pair[k]["output"].float().cpu()
            results[(options.label, side)] = pair
            logger.info("UNet step %dpx [%s]: ours %.1f ms, diffusers %.1f ms", side, options.label,
                        pair["ours"]["seconds"] * 1e3, pair["diffusers"]["seconds"] * 1e3)
        ours.restore_layout()
    return results


def bench_e2e(ours: "Ours", theirs: "Diffusers", preset: Preset, args, device, weights, options_list) -> dict:
    """Text-to-image (prior, decoder, MoVQ decode) per option set of ours and size, paired with diffusers."""
    results = {}
    for options in options_list:
        ours.use(options)
        for side in preset.e2e_sizes:
            fns = {"ours": lambda: ours.t2i(side, args.prior_steps, args.decoder_steps),
                   "diffusers": lambda: theirs.t2i(side, args.prior_steps, args.decoder_steps)}
            with torch.no_grad():
                ours.t2i(side, 2, 2)  # warm-up: kernels, allocator, cuDNN plans (and compilation) at this size
                theirs.t2i(side, 2, 2)
                pair = results[(options.label, side)] = _pair(fns, args.repeats, device, weights)
            logger.info("t2i %dpx [%s]: ours %.2f s, diffusers %.2f s", side, options.label, pair["ours"]["seconds"],
                        pair["diffusers"]["seconds"])
    ours.use(SpeedOptions())
    return results


def bench_modes(ours: "Ours", args, device, side: int, modes) -> dict:
    """Our memory modes at one size (diffusers unloaded): steady-state seconds per image, peak memory."""
    results = {}
    for mode in modes:
        for m in ours.modules():
            m.to("cpu")
        _free(device)
        rt = LocalRuntime(device, memory_mode=mode)
        with torch.no_grad():
            ours.t2i(side, 2, 2, runtime=rt)
            _reset_peak(device)
            seconds, image = _timed(lambda: ours.t2i(side, args.prior_steps, args.decoder_steps, runtime=rt), device)
        results[mode] = {"seconds": seconds, "peak_gib": _peak(device), "image": image}
        rt.offload_all()
        logger.info("ours memory mode %s %dpx: %.2f s, peak %s GiB", mode, side, seconds, results[mode]["peak_gib"])
    LocalRuntime(device).load(ours.modules())  # back to all-resident, hooks removed
    return results


# --- driver --------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=["2.2", "3"], default="2.2",
                   help="2.2 (this file) or 3 (benchmarks/bench_k3.py: its own options, see its --help)")
    p.add_argument("--device", default="cuda" if cuda else "cpu", help="cuda or cpu (default: cuda if available)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="model size (default: full on cuda, cpu on cpu)")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="weights/compute dtype (default: fp16 on cuda, fp32 on cpu)")
    p.add_argument("--movq-dtype", choices=sorted(DTYPES),
                   help="our MoVQ dtype (default: fp32, our `auto` choice; diffusers runs it in --dtype)")
    p.add_argument("--sections", default="unet,e2e,modes", help="comma list of unet, e2e, modes (load always runs)")
    p.add_argument("--variants", help="comma list of our UNet-step option sets: eager, channels_last, compile, "
                                      "cudagraphs (compile with CUDA graphs), joined by + (default: eager,"
                                      "channels_last,compile,cudagraphs+channels_last on cuda; eager,channels_last "
                                      "on cpu)")
    p.add_argument("--e2e-options", help="comma list of our speed option sets end-to-end (default: eager on cpu; "
                                         "eager,cudagraphs+channels_last on cuda)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode for the compile variants")
    p.add_argument("--modes", default=",".join(MEMORY_MODES), help="our memory modes to time end-to-end")
    p.add_argument("--step-sizes", help="comma list of image sides for the UNet step (default: the preset's)")
    p.add_argument("--e2e-sizes", help="comma list of image sides end-to-end (default: the preset's)")
    p.add_argument("--prior-steps", type=int, default=25)
    p.add_argument("--decoder-steps", type=int, default=50)
    p.add_argument("--iters", type=int, help="timed UNet forwards per size (default 20 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, help="untimed UNet forwards first (default 5 on cuda, 1 on cpu)")
    p.add_argument("--rounds", type=int, help="alternating ours/diffusers rounds of UNet forwards, best taken "
                                              "(default 3)")
    p.add_argument("--repeats", type=int, help="alternating end-to-end runs per size, best taken (default 3 cuda, "
                                               "2 cpu)")
    p.add_argument("--matmul-size", type=int, help="side of the ceiling matmul (default 8192 cuda, 2048 cpu)")
    p.add_argument("--work-dir", help="where the random-weight repos are built (reused across runs)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.preset = args.preset or ("full" if cuda else "cpu")
    args.dtype = args.dtype or ("fp16" if cuda else "fp32")
    args.movq_dtype = args.movq_dtype or "fp32"
    args.variants = args.variants or ("eager,channels_last,compile,cudagraphs+channels_last" if cuda
                                      else "eager,channels_last")
    args.e2e_options = args.e2e_options or ("eager,cudagraphs+channels_last" if cuda else "eager")
    args.iters = args.iters or (10 if cuda else 1)
    args.rounds = args.rounds or 3
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.repeats = args.repeats or (3 if cuda else 2)
    args.matmul_size = args.matmul_size or (8192 if cuda else 2048)
    return args


def parse_options(text: str, compile_mode: str | None) -> SpeedOptions:
    """"eager", "channels_last", "compile" (mode --compile-mode), "cudagraphs" (compile, reduce-overhead), joined by +."""
    parts = set(text.split("+"))
    unknown = parts - {"eager", "channels_last", "compile", "cudagraphs"}
    if unknown:
        raise SystemExit(f"unknown speed option(s) {sorted(unknown)}; use eager, channels_last, compile, cudagraphs")
    compiled = bool(parts & {"compile", "cudagraphs"})
    mode = "reduce-overhead" if "cudagraphs" in parts else compile_mode
    return SpeedOptions(channels_last="channels_last" in parts, compile=compiled, compile_mode=mode if compiled else None)


def environment(device: torch.device) -> dict:
    import diffusers
    import transformers

    env = {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "cpu": _cpu_name(),
           "threads": torch.get_num_threads()}
    with contextlib.suppress(OSError, AttributeError):
        env["load_average"] = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews CPU timings
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _wants_k3(argv: list[str]) -> bool:
    return any(a == "--model=3" or (a == "--model" and argv[i + 1:i + 2] == ["3"]) for i, a in enumerate(argv))


def run(argv=None) -> dict:
    """Run the benchmark; returns the results (also printed as a table)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if _wants_k3(argv):
        from benchmarks import bench_k3

        return bench_k3.run(argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    preset, dtype = PRESETS[args.preset], DTYPES[args.dtype]
    sizes = {}
    for key, text in (("step_sizes", args.step_sizes), ("e2e_sizes", args.e2e_sizes)):
        if text:
            sizes[key] = tuple(int(v) for v in text.split(","))
            if any(v % 64 for v in sizes[key]):
                raise SystemExit(f"--{key.replace('_', '-')}: image sides must be multiples of 64, got {text}")
    preset = dataclasses.replace(preset, **sizes)
    sections = set(args.sections.split(","))
    variants = [parse_options(v, args.compile_mode) for v in args.variants.split(",")]
    e2e_options = [parse_options(v, args.compile_mode) for v in args.e2e_options.split(",")]
    if any(o.compile for o in variants + e2e_options):
        import torch._dynamo as dynamo

        dynamo.config.cache_size_limit = 64  # one entry per shape and option set; the default 8 is too few
        dynamo.config.accumulated_cache_size_limit = 512
    modes = [m for m in args.modes.split(",") if m]
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / "kandinsky-bench" / f"{preset.name}-{args.dtype}")

    _quiet_libraries()
    build_seconds, (prior_repo, decoder_repo) = _timed(
        lambda: build_repos(preset, work, dtype=dtype, device=device, seed=SEED), device)
    _warm_page_cache(weight_files(prior_repo) + weight_files(decoder_repo))

    results: dict = {"args": vars(args), "env": environment(device), "preset": preset.name,
                     "reduced": preset.reduced, "build_seconds": build_seconds}
    config = UNetConfig.from_dict(preset.unet)
    flops = {side: unet_flops(config, side) for side in preset.step_sizes}
    results["unet_tflop_per_forward"] = {side: f / 1e12 for side, f in flops.items()}
    cuda = device.type == "cuda"
    results["matmul_tflops"] = {args.dtype: matmul_tflops(device, dtype, args.matmul_size, 10 if cuda else 3)}
    if args.dtype != "bf16":  # CPUs without bf16 units run it far below fp32: a smaller product is enough there
        side = args.matmul_size if cuda else min(args.matmul_size, 512)
        results["matmul_tflops"]["bf16"] = matmul_tflops(device, torch.bfloat16, side, 10 if cuda else 1)

    impls, weights = {}, {}
    for cls in (Ours, Diffusers):
        before = _allocated(device)
        load_seconds, impls[cls.label] = _timed(lambda: cls(args, prior_repo, decoder_repo, device), device)
        after = _allocated(device)
        weights[cls.label] = None if after is None else after - before
        results[cls.label] = {"load_seconds": load_seconds, "weights_gib": weights[cls.label]}
        logger.info("%s loaded in %.2f s", cls.label, load_seconds)
    ours, theirs = impls["ours"], impls["diffusers"]
    if "unet" in sections:
        results["unet"] = bench_unet(ours, theirs, preset, args, device, dtype, variants, flops, weights)
    if "e2e" in sections:
        results["e2e"] = bench_e2e(ours, theirs, preset, args, device, weights, e2e_options)
    del theirs, impls
    _free(device)
    if "modes" in sections and modes:  # eager models: lowvram cannot be compiled
        results["modes"] = bench_modes(ours, args, device, max(preset.e2e_sizes), modes)
    table = format_table(results, preset, args)
    print(table)
    results["table"] = table
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable(results), indent=2))
    return results


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
    with contextlib.suppress(Exception):
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k if not isinstance(k, tuple) else "/".join(map(str, k))): _jsonable(v) for k, v in x.items()
                if not isinstance(v, torch.Tensor)}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


# --- table ---------------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _ratio(ours, theirs) -> str:
    return "-" if not ours or not theirs else f"{ours / theirs:.2f}"


def format_table(results: dict, preset: Preset, args) -> str:
    """One markdown table: metric, ours, diffusers, ours/diffusers (< 1 is better for times and memory)."""
    ceiling = max(results["matmul_tflops"].values())
    ours, theirs = results["ours"], results["diffusers"]
    rows = [("load weights -> device (s)", ours["load_seconds"], theirs["load_seconds"], ".2f")]
    if ours.get("weights_gib") is not None:
        rows.append(("weights on device (GiB)", ours["weights_gib"], theirs["weights_gib"], ".2f"))
    notes = []
    for (label, side), pair in results.get("unet", {}).items():
        a, b = pair["ours"], pair["diffusers"]
        rows.append((f"UNet step {side}px, batch 2 (ms) [{label}]", a["seconds"] * 1e3, b["seconds"] * 1e3, ".1f"))
        rows.append((f"UNet TFLOP/s {side}px [{label}] (% of matmul)", a["tflops"], b["tflops"], ".3g",
                     f"{100 * a['tflops'] / ceiling:.0f}% / {100 * b['tflops'] / ceiling:.0f}%"))
        if a["activation_gib"] is not None:
            rows.append((f"UNet step {side}px activations (GiB) [{label}]", a["activation_gib"], b["activation_gib"],
                         ".2f"))
        dist = cosine_distance(a["output"], b["output"])
        diff = (a["output"] - b["output"]).abs().max().item()
        notes.append(f"UNet output {side}px [{label}] ours vs diffusers: cosine distance {dist:.1e}, "
                     f"max abs diff {diff:.1e}")
    for (label, side), pair in results.get("e2e", {}).items():
        a, b = pair["ours"], pair["diffusers"]
        rows.append((f"t2i {side}px end-to-end (s) [{label}]", a["seconds"], b["seconds"], ".2f"))
        if a["peak_gib"] is not None:
            rows.append((f"t2i {side}px peak memory (GiB)", a["peak_gib"], b["peak_gib"], ".2f"))
        dist = cosine_distance(a["output"], b["output"])
        diff = (a["output"] - b["output"]).abs().max().item()
        notes.append(f"t2i {side}px image ours vs diffusers: cosine distance {dist:.1e}, max abs diff {diff:.1e}")
    side = max(preset.e2e_sizes)
    base = results.get("e2e", {}).get(("eager", side), {}).get("diffusers", {})
    for mode, r in results.get("modes", {}).items():
        rows.append((f"t2i {side}px, our memory mode {mode} (s)", r["seconds"], base.get("seconds"), ".2f"))
        if r["peak_gib"] is not None:
            rows.append((f"t2i {side}px, our memory mode {mode} peak (GiB)", r["peak_gib"], base.get("peak_gib"),
                         ".2f"))
    env = results["env"]
    head = [
        f"Kandinsky 2.2 benchmark: preset {results['preset']} ({results['reduced']}); {args.dtype} (our MoVQ "
        f"{args.movq_dtype}); device {env.get('gpu', env['cpu'])} ({args.device}); torch {env['torch']}, diffusers "
        f"{env['diffusers']}, transformers {env['transformers']}; {env['threads']} CPU threads; load average at "
        f"start {env.get('load_average', '-')}.",
        f"Prior {args.prior_steps} steps with a negative prompt, decoder {args.decoder_steps} DDPM steps, guidance "
        f"{GUIDANCE}. UNet TFLOP per batch-1 forward: "
        + ", ".join(f"{s}px {f:.4g}" for s, f in results["unet_tflop_per_forward"].items())
        + ". Matmul ceiling: " + ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in results["matmul_tflops"].items())
        + f". Best of {args.rounds} alternating ours/diffusers rounds of {args.iters} UNet forwards; best of "
        f"{args.repeats} alternating t2i runs.",
        "",
        "| metric | ours | diffusers | ours/diffusers |",
        "|---|---|---|---|",
    ]
    for row in rows:
        name, a, b, spec = row[:4]
        ratio = row[4] if len(row) > 4 else _ratio(a, b)
        head.append(f"| {name} | {_fmt(a, spec)} | {_fmt(b, spec)} | {ratio} |")
    notes.append("Ours loads what its stages run: for text-to-image with a negative prompt the CLIP image tower "
                 "stays on the CPU (diffusers' pipelines move every component to the device).")
    return "\n".join(head + [""] + notes)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run(argv)


if __name__ == "__main__":
    main()
