"""Kandinsky for ComfyUI: Kandinsky 2.x as native PyTorch nodes (see README.md).

ComfyUI imports this file as the custom node pack; the nodes live in nodes/, the model code in kandinsky_core/.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
