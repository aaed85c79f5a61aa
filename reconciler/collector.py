"""Pausing Python's cyclic garbage collector where it only rescans objects that live on.

Start-up (modules, classes, the argument parser) and loading manifests build thousands of
lasting objects and no reference cycles; each full collection would walk them all again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Pause the collector (nests; restores what it found)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
