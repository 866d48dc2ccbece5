"""A real, throwaway ``redis-server`` on a free loopback port.

Used by the integration tests, the demo and the benchmark. ``redis-server`` comes from
PATH (``deploy/redis/install.sh`` installs it when missing and allowed); it runs in the
foreground as a child in its own process group, without persistence, and is stopped
on :meth:`LocalRedis.stop`, on context-manager exit, and from an :mod:`atexit` hook.

Standard library only (this module is unrelated to the ``redis`` client package).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from engine.local.ports import LOOPBACK, free_port, read_tail, terminate_process_group

__all__ = ["LocalRedis", "ping", "resolve_redis_server"]

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT: Final = REPO_ROOT / "deploy" / "redis" / "install.sh"

_STOP_GRACE_S: Final = 10.0
_BIND_RETRIES: Final = 3
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


class LocalRedis:
    """A throwaway ``redis-server`` on ``127.0.0.1`` (no RDB, no AOF).

    ``data_dir``: the server's working dir (kept after :meth:`stop` when given, otherwise
    a temp dir that is removed). ``log_path``: server output (default: in the temp dir).
    """

    def __init__(self, data_dir: Path | None = None, log_path: Path | None = None) -> None:
        self._data_dir = data_dir
        self._log_path_arg = log_path
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0
        self._tmp: Path | None = None
        self._port: int | None = None
        self._atexit_registered = False
        #: Seconds from :meth:`start` to the first ``+PONG``, for the last start.
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("LocalRedis is not started")
        return self._port

    @property
    def url(self) -> str:
        """``"redis://127.0.0.1:PORT/0"``, valid after :meth:`start`."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        if self._log_path_arg is not None:
            return self._log_path_arg
        return None if self._tmp is None else self._tmp / "redis.log"

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Launch ``redis-server`` and block until it answers ``PING``.

        Raises ``RuntimeError`` (with the server's output) if it exits or does not answer
        within ``timeout`` seconds; nothing is left running then.
        """
        with self._lock:
            if self.running:
                return
            if self._proc is not None or self._tmp is not None:
                self.stop()  # leftovers of a server that died on its own
            started = time.monotonic()
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            try:
                self._start(started + timeout)
            except BaseException:
                self.stop()
                raise
            self.startup_seconds = time.monotonic() - started
            log.info("redis-server ready on %s in %.2fs", self.url, self.startup_seconds)

    def _start(self, deadline: float) -> None:
        server = resolve_redis_server()
        self._tmp = Path(tempfile.mkdtemp(prefix="journey-redis-"))
        workdir = self._data_dir if self._data_dir is not None else self._tmp / "data"
        workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(_BIND_RETRIES):
            self._launch(server, workdir)
            try:
                self._wait_ready(deadline)
                return
            except _AddressInUse:
                log.warning("redis port taken before the server bound it; retrying")
                self._reap()
        raise RuntimeError(f"could not bind a redis port after {_BIND_RETRIES} attempts")

    def _launch(self, server: str, workdir: Path) -> None:
        assert self._tmp is not None
        self._port = free_port()
        log_path = self.log_path
        assert log_path is not None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log_path.open("ab")
        self._log_offset = self._log_file.tell()
        cmd = [
            server,
            "--port",
            str(self._port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self._tail()
                if "Address already in use" in tail:
                    raise _AddressInUse
                raise RuntimeError(
                    f"redis-server exited with code {code} during start-up; output:\n{tail}"
                )
            if ping(self.port, timeout=0.5):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"redis-server not answering PING on port {self.port} before the "
                    f"timeout; output:\n{self._tail()}"
                )
            time.sleep(0.02)

    def _tail(self) -> str:
        path = self.log_path
        if path is None:
            return "<no log>"
        if self._log_file is not None:
            self._log_file.flush()
        return read_tail(path, self._log_offset)

    def _reap(self) -> None:
        if self._proc is not None:
            terminate_process_group(self._proc, _STOP_GRACE_S, "redis-server")
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 10 s) and remove temp files. Idempotent."""
        with self._lock:
            if self._proc is not None:
                log.info("stopping redis-server (pid %d) on port %s", self._proc.pid, self._port)
            self._reap()
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<LocalRedis {where} running={self.running}>"


class _AddressInUse(Exception):
    pass
