"""The jobs of a `kandinsky_queue.py --batch` run and its manifest (standard library only).

A batch file has one JSON object per line, each a job of the same workflow:

    {"name": "fox", "prompt": "a red fox", "seed": 1, "size": "768x512", "Decoder: sample latent.steps": 30}

Keys: `name` (the job's output name; default job-LINE), `prompt`, `negative_prompt`, `seed`, `size`
("WxH" or [W, H]), `images` (a list of "[NODE=]PATH", paths relative to the batch file) and any
"NODE.INPUT" (NODE = id or title) with a JSON value. The command line's overrides apply first, then the
job's. Blank lines and lines starting with # are skipped.

The manifest (manifest.jsonl beside the images) gets one line per finished job: job, server, seed,
files, seconds, error (null when it succeeded). The last line of a job wins; a rerun skips the jobs whose
last line succeeded and whose files are all present.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import kandinsky_queue as kq

JOB_KEYS = ("name", "prompt", "negative_prompt", "seed", "size", "images")
MANIFEST = "manifest.jsonl"


@dataclass
class Job:
    """One line of the batch file, resolved into the workflow to queue."""

    name: str
    line: int
    workflow: dict
    images: list[tuple[str, Path]] = field(default_factory=list)  # (LoadImage node id, file) to upload

    @property
    def seed(self):
        """The seed the job runs with (the first `seed` input), recorded in the manifest."""
        seeds = [node.get("inputs", {}).get("seed") for node in self.workflow.values()]
        return next((seed for seed in seeds if isinstance(seed, int)), None)


def job_size(value) -> tuple[int, int]:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        value = f"{value[0]}x{value[1]}"
    if not isinstance(value, str):
        raise argparse.ArgumentTypeError(f"size must be \"WxH\" or [W, H], got {value!r}")
    return kq.parse_size(value)


def build_job(base: dict, spec: dict, line: int, folder: Path, defaults: argparse.Namespace,
              input_names: Callable[[str], set[str] | None] | None) -> Job:
    """The job of one batch line: the base workflow with the command line's, then the job's overrides."""
    unknown = [key for key in spec if key not in JOB_KEYS and "." not in key]
    if unknown:
        raise kq.UsageError(f"unknown key(s) {', '.join(map(repr, unknown))}; a job takes {', '.join(JOB_KEYS)} "
                            "and NODE.INPUT keys.")
    name = str(spec.get("name", f"job-{line:04d}"))
    if not name or any(c in name for c in "/\\\0") or name.startswith("."):
        raise kq.UsageError(f"name {name!r} cannot be a file name.")
    workflow = copy.deepcopy(base)
    kq.apply_overrides(workflow, defaults, input_names)
    try:
        size = job_size(spec["size"]) if "size" in spec else None
    except argparse.ArgumentTypeError as exc:
        raise kq.UsageError(str(exc)) from None
    if "seed" in spec and not isinstance(spec["seed"], int):
        raise kq.UsageError(f"seed must be an integer, got {spec['seed']!r}.")
    kq.apply_overrides(workflow, argparse.Namespace(
        prompt=spec.get("prompt"), negative_prompt=spec.get("negative_prompt"), seed=spec.get("seed"), size=size,
        set=[]), input_names)
    for key, value in spec.items():
        if key in JOB_KEYS:
            continue
        split = kq.split_at_node(workflow, key, ".")
        if not split or not split[1]:
            ref = key.rpartition(".")[0]
            kq.find_node(workflow, ref)  # raises: no node (or several) with that id or title
            raise kq.UsageError(f"key {key!r} must be NODE.INPUT.")
        kq.set_node_input(workflow, split[0], split[1], value, input_names, f"key {key!r}")
    images = spec.get("images", defaults.image)
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise kq.UsageError(f"images must be a list of \"[NODE=]PATH\" strings, got {images!r}.")
    if "images" in spec:  # relative to the batch file
        images = [resolve_image(image, workflow, folder) for image in images]
    return Job(name, line, workflow, kq.image_targets(workflow, images))


def resolve_image(spec: str, workflow: dict, folder: Path) -> str:
    split = None if (folder / spec).is_file() else kq.split_at_node(workflow, spec, "=")
    node, path = (split[0] + "=", split[1]) if split else ("", spec)
    return node + str(folder / path)


def read_jobs(path: Path, base: dict, defaults: argparse.Namespace,
              input_names: Callable[[str], set[str] | None] | None = None) -> list[Job]:
    """Every job of a batch file, checked before anything is queued (a bad line is a UsageError)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise kq.UsageError(f"Cannot read the batch file {path}: {exc}") from exc
    jobs: list[Job] = []
    for number, text in enumerate(lines, 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            spec = json.loads(text)
            if not isinstance(spec, dict):
                raise kq.UsageError("a job must be a JSON object.")
            jobs.append(build_job(base, spec, number, Path(path).parent, defaults, input_names))
        except ValueError as exc:
            raise kq.UsageError(f"{path}:{number}: not valid JSON: {exc}") from None
        except kq.UsageError as exc:
            raise kq.UsageError(f"{path}:{number}: {exc}") from None
    names = [job.name for job in jobs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise kq.UsageError(f"{path}: job names must be unique; repeated: {', '.join(repeated)}.")
    if not jobs:
        raise kq.UsageError(f"{path} has no jobs (one JSON object per line).")
    return jobs


class Manifest:
    """manifest.jsonl: appended one whole line per finished job (thread-safe), read back on a rerun."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / MANIFEST
        self.lock = threading.Lock()

    def records(self) -> dict[str, dict]:
        """The last record of each job (a torn last line from a killed run is ignored)."""
        last: dict[str, dict] = {}
        if self.path.is_file():
            for text in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(text)
                    last[record["job"]] = record
                except (ValueError, KeyError, TypeError):
                    continue
        return last

    def completed(self) -> set[str]:
        """Jobs whose last record succeeded and whose files are all present."""
        return {job for job, r in self.records().items()
                if r.get("error") is None and r.get("files") and all((self.folder / f).is_file() for f in r["files"])}

    def add(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())


def output_name(job: str, index: int, count: int, filename: str) -> str:
    """The deterministic file name of a job's index-th image: NAME.png, or NAME_1.png ... with several."""
    suffix = Path(filename).suffix or ".png"
    return f"{job}{suffix}" if count == 1 else f"{job}_{index + 1}{suffix}"


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so a present file is always complete."""
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_bytes(data)
    os.replace(temporary, path)
