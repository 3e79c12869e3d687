"""Stage functions: the steps of the Kandinsky pipelines, each a node in the ComfyUI graph."""
