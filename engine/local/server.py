"""The lifecycle shared by the local servers: a child process on a free loopback port.

:class:`LocalServer` owns what :class:`~engine.local.kafka.LocalKafka` and
:class:`~engine.local.redis.LocalRedis` have in common: the lock, the temp dir, the
:mod:`atexit` safety net, the start loop that retries with fresh ports when another
process grabs one first (:class:`AddressInUse`), the idempotent stop that reaps the
process group and removes the temp dir, and the context-manager protocol. A subclass
says only what differs: how to find the server, its command line, when it is ready.

Standard library only.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Final, Generic, Self, TypeVar

from engine.local.ports import read_tail, terminate_process_group

__all__ = ["AddressInUse", "LocalServer"]

log = logging.getLogger(__name__)

#: How many times :meth:`LocalServer.start` launches the server when its port is taken.
BIND_RETRIES: Final = 3

#: What :meth:`LocalServer._resolve` finds (the executable, the jars...) for the launches.
ToolT = TypeVar("ToolT")


class AddressInUse(Exception):
    """The server exited during start-up because another process took its port first."""


class LocalServer(ABC, Generic[ToolT]):
    """A throwaway server process on ``127.0.0.1``, stopped by :meth:`stop` at the latest.

    ``data_dir``: the server's data (kept after :meth:`stop` when given, otherwise a
    ``data`` dir in the temp dir). ``log_path``: the server's stdout/stderr (default: a
    file in the temp dir). The temp dir, and with it the defaults, is removed on stop.
    """

    #: What the server is called in messages, e.g. ``"redis-server"``.
    _NAME: ClassVar[str]
    #: Prefix of the temp dir, e.g. ``"journey-redis-"``.
    _TMP_PREFIX: ClassVar[str]
    #: File name of the default log in the temp dir.
    _LOG_NAME: ClassVar[str]
    #: Seconds between SIGTERM and SIGKILL on stop.
    _STOP_GRACE_S: ClassVar[float]
    #: Seconds between readiness checks during start-up.
    _POLL_S: ClassVar[float]
    #: Where lifecycle messages go (the subclass's module logger).
    _log: ClassVar[logging.Logger] = log

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
        #: Seconds from :meth:`start` to ready, for the last successful start.
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ what subclasses say

    @abstractmethod
    def _address(self) -> str:
        """How clients reach the started server (``bootstrap``, ``url``)."""

    @abstractmethod
    def _resolve(self) -> ToolT:
        """Find what the launches need; runs before the temp dir exists."""

    @abstractmethod
    def _command(
        self, tool: ToolT, attempt: int, data_dir: Path, deadline: float
    ) -> tuple[list[str], Path]:
        """Pick fresh ports, prepare launch ``attempt`` (1-based); return argv and cwd."""

    @abstractmethod
    def _ready(self, deadline: float) -> bool:
        """One readiness check of the running process; raise ``RuntimeError`` on timeout."""

    def _stopping(self, proc: subprocess.Popen[bytes]) -> None:
        """Called by :meth:`stop` before it reaps a process that was started."""
        self._log.info("stopping %s (pid %d) on port %s", self._NAME, proc.pid, self._port)

    def _after_reap(self, code: int | None) -> None:
        """Called by every reap once the process is gone (``code`` None if there was none)."""

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Where the server writes its console output (None before :meth:`start`)."""
        if self._log_path_arg is not None:
            return self._log_path_arg
        return None if self._tmp is None else self._tmp / self._LOG_NAME

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Launch the server and block until it is ready.

        Raises ``RuntimeError`` (with the tail of the server's output) if it exits or is
        not ready within ``timeout`` seconds; nothing is left running then.
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
            self._log.info(
                "%s ready on %s in %.2fs (pid %d)",
                self._NAME,
                self._address(),
                self.startup_seconds,
                self._proc.pid if self._proc else -1,
            )

    def _start(self, deadline: float) -> None:
        tool = self._resolve()
        self._tmp = Path(tempfile.mkdtemp(prefix=self._TMP_PREFIX))
        data_dir = self._data_dir if self._data_dir is not None else self._tmp / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, BIND_RETRIES + 1):
            cmd, cwd = self._command(tool, attempt, data_dir, deadline)
            self._launch(cmd, cwd)
            try:
                self._wait_ready(deadline)
                return
            except AddressInUse:
                self._log.warning(
                    "%s port taken before it bound it; retrying with new ports", self._NAME
                )
                self._reap()
        raise RuntimeError(f"could not bind {self._NAME} ports after {BIND_RETRIES} attempts")

    def _launch(self, cmd: list[str], cwd: Path) -> None:
        log_path = self.log_path
        assert log_path is not None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log_path.open("ab")
        self._log_offset = self._log_file.tell()
        self._log.debug("starting %s: %s", self._NAME, " ".join(cmd))
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self._tail()
                if "Address already in use" in tail:
                    raise AddressInUse
                raise RuntimeError(
                    f"{self._NAME} exited with code {code} during start-up; "
                    f"{self._output_where()}:\n{tail}"
                )
            if self._ready(deadline):
                return
            time.sleep(self._POLL_S)

    def _output_where(self) -> str:
        # The default log lives in the temp dir, which stop() removes after a failure.
        if self._log_path_arg is not None:
            return f"tail of the log {self._log_path_arg}"
        return f"tail of the {self._NAME} output"

    def _tail(self) -> str:
        path = self.log_path
        if path is None:
            return "<no log>"
        if self._log_file is not None:
            self._log_file.flush()
        return read_tail(path, self._log_offset)

    def _reap(self) -> None:
        code: int | None = None
        if self._proc is not None:
            code = terminate_process_group(self._proc, self._STOP_GRACE_S, self._NAME)
            self._proc = None
        self._after_reap(code)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after a grace period), remove temp files.

        Idempotent; also registered with :mod:`atexit` while the server runs.
        """
        with self._lock:
            if self._proc is not None:
                self._stopping(self._proc)
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
        where = self._address() if self._port is not None else "not started"
        return f"<{type(self).__name__} {where} running={self.running}>"
