"""Native PyTorch Kandinsky core: models, schedulers, loading and pipeline stages (no ComfyUI, no diffusers)."""
