"""``python -m tests.integration.failing_reader worker``: the worker, with an input
reader that fails on its first fetch (for the test that a reader failure stops the
worker)."""

from __future__ import annotations

import sys

from engine.cli import main
from engine.worker.input_reader import InputReader


async def _fail(*args: object, **kwargs: object) -> None:
    raise RuntimeError("input reader failure injected by the test")


InputReader._handle = _fail  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
