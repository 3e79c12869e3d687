"""Progress bars for the command line: one tqdm bar per stage (prior, decoder), fed by LocalRuntime.

tqdm comes with transformers (a dependency); the bars go to stderr and are off with `enabled=False`.
"""
from __future__ import annotations

import sys


class StageBars:
    """A LocalRuntime `on_progress` callback drawing one bar per stage; call `stage(name)` before each."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.name = ""
        self.bar = None

    def stage(self, name: str) -> None:
        self.close()
        self.name = name

    def __call__(self, step: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None or self.bar.total != total:
            from tqdm.auto import tqdm

            self.close()
            self.bar = tqdm(total=total, desc=self.name, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
