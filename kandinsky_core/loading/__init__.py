"""Find Kandinsky repo folders, read model_index.json and configs, load weights safely and strictly."""
from .repo import (
    EXAMPLE_REPOS,
    KANDINSKY_PIPELINES,
    MissingFileError,
    ModelIndex,
    component_dir,
    list_repo_folders,
    read_component_config,
    read_json,
    read_model_index,
)
from .strict import (
    CheckpointMismatchError,
    check_state_dict,
    empty_weights,
    load_strict,
    materialize,
    meta_tensors,
    state_dict_shapes,
)
from .weights import (
    find_weight_files,
    locate_weights,
    read_component_weights,
    read_shard_index,
    read_state_dict,
)
