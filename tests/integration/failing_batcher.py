"""``python -m tests.integration.failing_batcher worker``: the worker, with a batcher
that fails on its first fetch (for the test that a batcher failure stops the worker)."""

from __future__ import annotations

import sys

from engine import envelope
from engine.cli import main


def _fail(*args: object, **kwargs: object) -> bytes:
    raise RuntimeError("batcher failure injected by the test")


envelope.encode = _fail

if __name__ == "__main__":
    sys.exit(main())
