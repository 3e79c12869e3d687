"""Read diffusers-format Kandinsky repo folders: model_index.json, component subfolders, configs.

A repo folder is what `hf download kandinsky-community/<repo> --local-dir models/kandinsky/<repo>` leaves:
a `model_index.json` at the root naming the pipeline class and its components, and one subfolder per
component (`unet/`, `movq/`, `prior/`, ...), each with a `config.json` and weight files.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_INDEX_NAME = "model_index.json"
CONFIG_NAME = "config.json"

# Pipeline class (`_class_name` in model_index.json) -> (Kandinsky version, role of the folder).
# "prior": text/image -> CLIP image embeddings; "decoder": UNet (+ MoVQ); "combined": a decoder folder
# saved from a combined pipeline, carrying the prior's components under a `prior_` prefix.
KANDINSKY_PIPELINES: dict[str, tuple[str, str]] = {
    "KandinskyPriorPipeline": ("2.1", "prior"),
    "KandinskyPipeline": ("2.1", "decoder"),
    "KandinskyImg2ImgPipeline": ("2.1", "decoder"),
    "KandinskyInpaintPipeline": ("2.1", "decoder"),
    "KandinskyCombinedPipeline": ("2.1", "combined"),
    "KandinskyImg2ImgCombinedPipeline": ("2.1", "combined"),
    "KandinskyInpaintCombinedPipeline": ("2.1", "combined"),
    "KandinskyV22PriorPipeline": ("2.2", "prior"),
    "KandinskyV22PriorEmb2EmbPipeline": ("2.2", "prior"),
    "KandinskyV22Pipeline": ("2.2", "decoder"),
    "KandinskyV22Img2ImgPipeline": ("2.2", "decoder"),
    "KandinskyV22InpaintPipeline": ("2.2", "decoder"),
    "KandinskyV22ControlnetPipeline": ("2.2", "decoder"),
    "KandinskyV22ControlnetImg2ImgPipeline": ("2.2", "decoder"),
    "KandinskyV22CombinedPipeline": ("2.2", "combined"),
    "KandinskyV22Img2ImgCombinedPipeline": ("2.2", "combined"),
    "KandinskyV22InpaintCombinedPipeline": ("2.2", "combined"),
    "Kandinsky3Pipeline": ("3", "decoder"),
    "Kandinsky3Img2ImgPipeline": ("3", "decoder"),
}

# Pipeline class -> the Hugging Face repo whose folder layout it has (for error messages).
EXAMPLE_REPOS: dict[str, str] = {
    "KandinskyPriorPipeline": "kandinsky-community/kandinsky-2-1-prior",
    "KandinskyPipeline": "kandinsky-community/kandinsky-2-1",
    "KandinskyImg2ImgPipeline": "kandinsky-community/kandinsky-2-1",
    "KandinskyInpaintPipeline": "kandinsky-community/kandinsky-2-1-inpaint",
    "KandinskyCombinedPipeline": "kandinsky-community/kandinsky-2-1",
    "KandinskyImg2ImgCombinedPipeline": "kandinsky-community/kandinsky-2-1",
    "KandinskyInpaintCombinedPipeline": "kandinsky-community/kandinsky-2-1-inpaint",
    "KandinskyV22PriorPipeline": "kandinsky-community/kandinsky-2-2-prior",
    "KandinskyV22PriorEmb2EmbPipeline": "kandinsky-community/kandinsky-2-2-prior",
    "KandinskyV22Pipeline": "kandinsky-community/kandinsky-2-2-decoder",
    "KandinskyV22Img2ImgPipeline": "kandinsky-community/kandinsky-2-2-decoder",
    "KandinskyV22InpaintPipeline": "kandinsky-community/kandinsky-2-2-decoder-inpaint",
    "KandinskyV22ControlnetPipeline": "kandinsky-community/kandinsky-2-2-controlnet-depth",
    "KandinskyV22ControlnetImg2ImgPipeline": "kandinsky-community/kandinsky-2-2-controlnet-depth",
    "KandinskyV22CombinedPipeline": "kandinsky-community/kandinsky-2-2-decoder",
    "KandinskyV22Img2ImgCombinedPipeline": "kandinsky-community/kandinsky-2-2-decoder",
    "KandinskyV22InpaintCombinedPipeline": "kandinsky-community/kandinsky-2-2-decoder-inpaint",
    "Kandinsky3Pipeline": "kandinsky-community/kandinsky-3",
    "Kandinsky3Img2ImgPipeline": "kandinsky-community/kandinsky-3",
}

DOWNLOAD_HINT = (
    "Download a Kandinsky repo in diffusers format into its own folder, e.g. "
    "`hf download kandinsky-community/kandinsky-2-2-decoder --local-dir "
    "models/kandinsky/kandinsky-2-2-decoder` (likewise kandinsky-2-2-prior, kandinsky-2-2-decoder-inpaint, "
    "kandinsky-2-2-controlnet-depth, kandinsky-2-1, kandinsky-2-1-prior, kandinsky-3), and select that folder."
)


class MissingFileError(FileNotFoundError, ValueError):
    """A required file or folder is absent (catchable as FileNotFoundError or ValueError)."""


@dataclass(frozen=True)
class ModelIndex:
    """The parsed model_index.json of a Kandinsky repo folder."""

    path: Path  # the repo folder
    class_name: str  # `_class_name`, e.g. "KandinskyV22Pipeline"
    diffusers_version: str | None  # `_diffusers_version` the folder was saved with (informational)
    components: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (library, class)

    @property
    def version(self) -> str:
        """Kandinsky version: "2.1", "2.2" or "3"."""
        return KANDINSKY_PIPELINES[self.class_name][0]

    @property
    def role(self) -> str:
        """"prior", "decoder" or "combined"."""
        return KANDINSKY_PIPELINES[self.class_name][1]

    @property
    def example_repo(self) -> str:
        """The kandinsky-community repo with this folder's layout."""
        return EXAMPLE_REPOS[self.class_name]


def read_json(path: str | Path) -> dict:
    """Read a JSON object from `path`; missing file or invalid JSON -> an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"File not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}). The file may be corrupt or incompletely downloaded; "
            "re-download it."
        ) from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, found a {type(data).__name__}.")
    return data


def _parse_components(data: dict) -> dict[str, tuple[str, str]]:
    """Component entries of a model_index dict: `name: [library, class]`; absent ([null, null]) skipped."""
    components = {}
    for name, value in data.items():
        if name.startswith("_") or not isinstance(value, (list, tuple)) or len(value) != 2:
            continue  # metadata or pipeline config flags such as `requires_safety_checker`
        library, cls = value
        if library is None or cls is None:
            continue  # optional component not saved
        components[name] = (str(library), str(cls))
    return components


def read_model_index(repo_dir: str | Path) -> ModelIndex:
    """Parse `repo_dir/model_index.json` and check that it describes a Kandinsky pipeline."""
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        raise MissingFileError(f"The model folder {repo_dir} does not exist or is not a folder. {DOWNLOAD_HINT}")
    index_path = repo_dir / MODEL_INDEX_NAME
    if not index_path.is_file():
        looks_like_component = (repo_dir / CONFIG_NAME).is_file() or (repo_dir.parent / MODEL_INDEX_NAME).is_file()
        extra = (
            f" It looks like a single component folder; select its parent folder {repo_dir.parent} instead."
            if looks_like_component
            else ""
        )
        raise ValueError(
            f"{repo_dir} is not a diffusers-format Kandinsky repo folder: it has no {MODEL_INDEX_NAME}.{extra} "
            f"{DOWNLOAD_HINT}"
        )
    data = read_json(index_path)
    class_name = data.get("_class_name")
    if not isinstance(class_name, str) or class_name not in KANDINSKY_PIPELINES:
        raise ValueError(
            f"{repo_dir} holds a {class_name!r} pipeline (from {index_path}), not a supported Kandinsky pipeline. "
            f"Supported: {', '.join(sorted(KANDINSKY_PIPELINES))}. {DOWNLOAD_HINT}"
        )
    return ModelIndex(
        path=repo_dir,
        class_name=class_name,
        diffusers_version=data.get("_diffusers_version"),
        components=_parse_components(data),
    )


def component_dir(repo_dir: str | Path, name: str) -> Path:
    """The folder of component `name` (e.g. "movq") inside a repo folder; a clear error if absent."""
    repo_dir = Path(repo_dir)
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"Invalid component name {name!r}: expected a subfolder name such as 'unet' or 'movq'.")
    path = repo_dir / name
    if path.is_dir():
        return path
    # Say which layout was expected, from model_index.json when the folder has one.
    index = None
    if (repo_dir / MODEL_INDEX_NAME).is_file():
        try:
            index = read_model_index(repo_dir)
        except ValueError:
            index = None
    if index is None:
        raise MissingFileError(
            f"The repo folder {repo_dir} has no {name!r} subfolder (and no usable {MODEL_INDEX_NAME}). {DOWNLOAD_HINT}"
        )
    layout = ", ".join(sorted(index.components)) or "none"
    if name not in index.components:
        raise ValueError(
            f"The repo folder {repo_dir} is a {index.class_name} folder (Kandinsky {index.version} {index.role}, "
            f"components: {layout}); it has no {name!r} component. Is this the right folder for this loader?"
        )
    raise MissingFileError(
        f"The repo folder {repo_dir} has no {name!r} subfolder although its {MODEL_INDEX_NAME} lists it; "
        f"expected the layout of {index.example_repo} ({layout}). The download is probably incomplete: "
        f"re-run `hf download {index.example_repo} --local-dir {repo_dir}`."
    )


def read_component_config(path: str | Path) -> dict:
    """Read `config.json` of a component folder (a diffusers or transformers model config)."""
    path = Path(path)
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise MissingFileError(
            f"The component folder {path} has no {CONFIG_NAME}; the download is incomplete or this is not a "
            f"diffusers-format component folder. {DOWNLOAD_HINT}"
        )
    return read_json(config_path)


_skipped: set[tuple[str, str]] = set()  # (folder, reason) already logged by list_repo_folders


def _skip(folder: Path, reason: object) -> None:
    """Log once per folder and reason that a folder is left out (loaders list folders on every refresh)."""
    key = (str(folder), str(reason))
    if key not in _skipped:
        _skipped.add(key)
        logger.warning("Skipping %s: %s", folder, reason)


def _kandinsky_role(folder: Path) -> str | None:
    """The role of a Kandinsky repo folder, or None if it is not one (unreadable or odd indexes are logged)."""
    try:
        data = read_json(folder / MODEL_INDEX_NAME)
    except (OSError, ValueError) as e:
        _skip(folder, e)
        return None
    class_name = data.get("_class_name")
    if not isinstance(class_name, str):
        _skip(folder, f"{MODEL_INDEX_NAME} has _class_name {class_name!r}, expected a pipeline class name")
        return None
    entry = KANDINSKY_PIPELINES.get(class_name)
    return entry[1] if entry else None


def _has_model_index(folder: Path) -> bool:
    try:
        return (folder / MODEL_INDEX_NAME).is_file()
    except OSError as e:  # e.g. a folder without read permission
        _skip(folder, e)
        return False


def list_repo_folders(
    models_dir: str | Path, roles: tuple[str, ...] | None = None, max_depth: int = 3
) -> list[str]:
    """Sub-folders (relative posix paths, sorted) of `models_dir` holding a Kandinsky model_index.json.

    `roles` keeps only folders of those roles ("prior", "decoder", "combined"). Hidden folders (such as
    the `.cache` that `hf download` creates) are skipped; a repo folder is not searched further. Folders
    that cannot be read or whose model_index.json is invalid or foreign are skipped and logged once.
    """
    root = Path(models_dir)
    if not root.is_dir():
        return []
    found = []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            children = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError as e:
            _skip(folder, e)
            continue
        for child in children:
            if _has_model_index(child):
                role = _kandinsky_role(child)
                if role is not None and (roles is None or role in roles):
                    found.append(child.relative_to(root).as_posix())
            elif depth + 1 < max_depth:
                stack.append((child, depth + 1))
    return sorted(found)
