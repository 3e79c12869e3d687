"""Kandinsky for ComfyUI: Kandinsky 2.1, 2.2 and 3 as native PyTorch nodes (see README.md).

ComfyUI imports this file as the custom node pack; the nodes live in nodes/, the model code in kandinsky_core/.
"""
WEB_DIRECTORY = "./web"

if __package__:  # imported as a package (ComfyUI's custom_nodes, the tests' load_pack)
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # this file alone, e.g. pytest collecting the repo root from a folder whose name is no identifier
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
