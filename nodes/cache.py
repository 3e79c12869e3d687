"""Loaded-model cache for the loader nodes.

Each loader node (ComfyUI keeps one instance per node in the graph) holds one `ModelSlot`. A slot returns
the same loaded model while its key (folder, dtypes) is unchanged; a new key releases the old model first
(before loading, to keep peak memory low). Slots with the same key share one loaded model; a model is
released when its last slot lets go of it.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Hashable

logger = logging.getLogger(__name__)

_lock = threading.RLock()


@dataclass(eq=False)
class _Entry:
    key: Hashable
    value: Any
    users: int = 0


_entries: dict[Hashable, _Entry] = {}


class ModelSlot:
    """One loader node's current model."""

    def __init__(self, on_release: Callable[[Any], None] | None = None) -> None:
        self._entry: _Entry | None = None
        self._on_release = on_release

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The model for `key`, loading it with `load()` unless this or another slot already holds it."""
        with _lock:
            if self._entry is not None and self._entry.key == key:
                return self._entry.value
            self.release()
            entry = _entries.get(key)
            if entry is None:
                logger.info("Loading Kandinsky model %s", key)
                entry = _Entry(key, load())
                _entries[key] = entry
            entry.users += 1
            self._entry = entry
            return entry.value

    def release(self) -> None:
        """Let go of the current model; the last user frees it (and unloads it from the GPU)."""
        with _lock:
            entry, self._entry = self._entry, None
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            _entries.pop(entry.key, None)
            logger.info("Releasing Kandinsky model %s", entry.key)
            if self._on_release is not None:
                self._on_release(entry.value)

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: nothing left to free
            pass


def cached_keys() -> list[Hashable]:
    """Keys of the models currently held by some slot (for tests and diagnostics)."""
    with _lock:
        return list(_entries)
