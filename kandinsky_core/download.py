"""Fetch the model repos a command needs from the Hugging Face Hub, only when the user asks (--download).

A model folder is named after its repo (models/kandinsky/kandinsky-2-2-prior <- the Hub's
kandinsky-community/kandinsky-2-2-prior). `ensure_repos` leaves complete folders alone and never touches
the network unless `download` is true; a missing folder is then an error showing both ways to get it.
Downloads go through huggingface_hub (a dependency of transformers) into the folder itself: resumable
(partial files are continued), with its progress bars, one weight format per component folder
(safetensors when the repo has them, no fp16 duplicates). HF_ENDPOINT picks another hub (or a mirror).
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
from pathlib import Path

logger = logging.getLogger(__name__)

HUB_OWNER = "kandinsky-community"
KNOWN_REPOS = ("kandinsky-2-2-prior", "kandinsky-2-2-decoder", "kandinsky-2-2-decoder-inpaint",
               "kandinsky-2-2-controlnet-depth", "kandinsky-2-1-prior", "kandinsky-2-1", "kandinsky-2-1-inpaint",
               "kandinsky-3")
COMPLETE_MARKER = ".kandinsky-download.json"  # written when a download finished: repo id, revision, files
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".onnx_data")
VARIANTS = (".fp16.", ".bf16.", ".fp32.")  # diffusers variant infixes: skipped when the plain file exists


class DownloadError(RuntimeError):
    """A download that failed (network, missing repo); the message says how to retry."""


def repo_for(folder: str | os.PathLike) -> str:
    """The Hub repo id of a model folder, from its name (kandinsky-2-2-prior -> kandinsky-community/...)."""
    name = Path(folder).name
    if name not in KNOWN_REPOS:
        raise ValueError(f"Cannot tell which Hub repo belongs in {str(folder)!r}: --download knows the folder names "
                         f"{', '.join(KNOWN_REPOS)} (the repos {HUB_OWNER}/<name>). Rename the folder, or fetch it "
                         f"yourself: hf download <repo id> --local-dir {folder}")
    return f"{HUB_OWNER}/{name}"


def is_complete(folder: str | os.PathLike) -> bool:
    """A folder that needs no download: one we finished, or one the user filled without huggingface_hub.

    A folder with huggingface_hub's download cache but no marker was interrupted (or fetched by
    `hf download`): it counts as incomplete, and snapshot_download resumes it, skipping finished files."""
    folder = Path(folder)
    if (folder / COMPLETE_MARKER).is_file():
        return True
    return folder.is_dir() and any(folder.iterdir()) and not (folder / ".cache" / "huggingface").exists()


def missing_message(folders: list[Path]) -> str:
    lines = [f"Model folder(s) not found: {', '.join(map(str, folders))}.",
             "Add --download to fetch them (from the Hugging Face Hub, resumable), or download them yourself:"]
    for folder in folders:
        try:
            lines.append(f"  hf download {repo_for(folder)} --local-dir {folder}")
        except ValueError:
            lines.append(f"  hf download <repo id> --local-dir {folder}")
    return "\n".join(lines)


def ensure_repos(folders: list[str | os.PathLike], download: bool = False, progress: bool = True) -> None:
    """Make sure every model folder exists; fetch missing or incomplete ones only when `download`."""
    folders = [Path(f) for f in folders]
    if not download:
        missing = [f for f in folders if not f.exists()]
        if missing:
            raise FileNotFoundError(missing_message(missing))
        return
    for folder in dict.fromkeys(folders):
        if is_complete(folder):
            logger.info("%s is complete; not downloading it.", folder)
            continue
        fetch_repo(repo_for(folder), folder, progress)


def wanted_files(files: list[str]) -> list[str]:
    """The repo files to fetch: everything but extra weight formats (per folder: safetensors over .bin,
    plain over fp16 variants)."""
    weights: dict[str, list[str]] = {}
    keep = []
    for name in files:
        if name.endswith(WEIGHT_SUFFIXES):
            weights.setdefault(posixpath.dirname(name), []).append(name)
        elif not name.startswith(".") and "/." not in name:
            keep.append(name)
    for names in weights.values():
        for choose in (lambda n: n.endswith(".safetensors") and not any(v in n for v in VARIANTS),
                       lambda n: n.endswith(".bin") and not any(v in n for v in VARIANTS),
                       lambda n: n.endswith(".safetensors"), lambda n: n.endswith(".bin")):
            chosen = [n for n in names if choose(n)]
            if chosen:
                keep += chosen
                break
    variant_indexes = [n for n in keep if n.endswith(".json") and any(v in n for v in VARIANTS)]
    return sorted(set(keep) - set(variant_indexes))


def fetch_repo(repo_id: str, folder: Path, progress: bool = True) -> None:
    """Download `repo_id` into `folder` with huggingface_hub (resuming partial files), then mark it complete."""
    import huggingface_hub
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    endpoint = os.environ.get("HF_ENDPOINT") or None
    logger.info("Downloading %s into %s ...", repo_id, folder)
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        info = huggingface_hub.HfApi(endpoint=endpoint).model_info(repo_id)
        files = wanted_files([s.rfilename for s in info.siblings or []])
        huggingface_hub.snapshot_download(repo_id, revision=info.sha, local_dir=folder, allow_patterns=files,
                                          endpoint=endpoint)
    except Exception as exc:  # network, HTTP and hub errors all end the command the same way
        raise DownloadError(f"Downloading {repo_id} into {folder} failed: {type(exc).__name__}: {exc}\n"
                            "Run the same command again to resume; files already fetched are kept.") from exc
    (folder / COMPLETE_MARKER).write_text(json.dumps({"repo": repo_id, "revision": info.sha, "files": files}, indent=1))
    logger.info("Downloaded %s (%d files).", repo_id, len(files))
