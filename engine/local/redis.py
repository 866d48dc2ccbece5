"""A real, throwaway ``redis-server`` on a free loopback port.

Used by the integration tests, the demo and the benchmark. ``redis-server`` comes from
PATH (``deploy/redis/install.sh`` installs it when missing and allowed); it runs in the
foreground as a child in its own process group, without persistence, and is stopped
on :meth:`LocalRedis.stop`, on context-manager exit, and from an :mod:`atexit` hook
(that lifecycle is :class:`engine.local.server.LocalServer`'s).

Standard library only (this module is unrelated to the ``redis`` client package).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

from engine.local.ports import LOOPBACK, free_port
from engine.local.server import LocalServer

__all__ = ["LocalRedis", "ping", "resolve_redis_server"]

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT: Final = REPO_ROOT / "deploy" / "redis" / "install.sh"

_PING: Final = b"*1\r\n$4\r\nPING\r\n"


def resolve_redis_server() -> str:
    """Path of ``redis-server``, running ``deploy/redis/install.sh`` first if it is missing."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    log.info("redis-server not on PATH; running %s", INSTALL_SCRIPT)
    try:
        subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"{INSTALL_SCRIPT} failed with exit code {exc.returncode}; install redis-server"
        ) from exc
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(f"redis-server still not on PATH after {INSTALL_SCRIPT}")
    return found


def ping(port: int, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """Send a RESP ``PING`` over a raw socket; True on ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_PING)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"+PONG")


class LocalRedis(LocalServer[str]):
    """A throwaway ``redis-server`` on ``127.0.0.1`` (no RDB, no AOF).

    ``data_dir``: the server's working dir (kept after :meth:`stop` when given, otherwise
    a temp dir that is removed). ``log_path``: server output (default: in the temp dir).
    :meth:`start` blocks until the server answers ``PING``; :meth:`stop` sends SIGTERM,
    SIGKILL after 10 s.
    """

    _NAME = "redis-server"
    _TMP_PREFIX = "journey-redis-"
    _LOG_NAME = "redis.log"
    _STOP_GRACE_S = 10.0
    _POLL_S = 0.02
    _log = log

    @property
    def url(self) -> str:
        """``"redis://127.0.0.1:PORT/0"``, valid after :meth:`start`."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    # ------------------------------------------------------------------ LocalServer hooks

    def _address(self) -> str:
        return self.url

    def _resolve(self) -> str:
        return resolve_redis_server()

    def _command(
        self, tool: str, attempt: int, data_dir: Path, deadline: float
    ) -> tuple[list[str], Path]:
        self._port = free_port()
        cmd = [
            tool,
            "--port",
            str(self._port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        return cmd, data_dir

    def _ready(self, deadline: float) -> bool:
        if ping(self.port, timeout=0.5):
            return True
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"redis-server not answering PING on port {self.port} before the "
                f"timeout; {self._output_where()}:\n{self._tail()}"
            )
        return False
