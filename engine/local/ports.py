"""Loopback port and child-process helpers for the local infrastructure harness.

Standard library only: this module is imported by test fixtures, the demo and the
benchmark, before any third-party client is set up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = [
    "LOOPBACK",
    "free_port",
    "is_port_open",
    "read_tail",
    "terminate_process_group",
    "wait_port_closed",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0); the socket is closed before returning, so
    another process may still grab it: callers retry when their server fails to bind.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def is_port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_closed(port: int, host: str = LOOPBACK, timeout: float = 10.0) -> bool:
    """Poll until ``host:port`` refuses connections; False if it is still open at the deadline."""
    deadline = time.monotonic() + timeout
    while is_port_open(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def read_tail(path: Path, start: int = 0, max_bytes: int = 8192) -> str:
    """Last ``max_bytes`` of ``path`` written after byte offset ``start`` (for error messages)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(start, size - max_bytes))
            data = fh.read()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return data.decode("utf-8", errors="replace")


def terminate_process_group(
    proc: subprocess.Popen[bytes], grace: float, name: str = "process"
) -> int | None:
    """SIGTERM the process group led by ``proc``, wait ``grace`` seconds, then SIGKILL.

    ``proc`` must have been started with ``start_new_session=True``. Returns the exit
    code (None only if even SIGKILL did not reap it within a few seconds).
    """
    if proc.poll() is not None:
        return proc.returncode
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) ignored SIGTERM for %.0fs; sending SIGKILL", name, proc.pid, grace)
    _kill_group(proc.pid, signal.SIGKILL)
    try:
        return proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        log.error("%s (pid %d) survived SIGKILL", name, proc.pid)
        return None


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
