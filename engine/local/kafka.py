"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback.

Used by the integration tests, the demo and the benchmark. The broker jars come from
``deploy/kafka/fetch.sh`` (Maven Central, cached); the broker runs as a child JVM in
its own process group and is stopped on :meth:`LocalKafka.stop`, on context-manager
exit, and as a last resort from an :mod:`atexit` hook.

:class:`LocalKafka` runs the broker's lifecycle; how it is configured (jars, JVM flags,
server.properties, storage formatting, class-data sharing) lives in
:mod:`engine.local.kafka_config`, and the readiness probe in :mod:`engine.local.kafka_probe`.

Standard library only.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from engine.local.kafka_config import (
    BROKER_JVM_FLAGS,
    LOG4J_CONFIG,
    cds_launch_flags,
    find_java,
    format_storage,
    kafka_cluster_id,
    publish_cds_archive,
    resolve_kafka_libs,
    write_server_properties,
)
from engine.local.kafka_probe import ProtocolError, metadata_brokers
from engine.local.ports import LOOPBACK, free_port, read_tail, terminate_process_group

__all__ = ["LocalKafka", "kafka_cluster_id", "metadata_brokers", "resolve_kafka_libs"]

log = logging.getLogger(__name__)

_STOP_GRACE_S: Final = 20.0
_BIND_RETRIES: Final = 3


# --------------------------------------------------------------------------- broker


class LocalKafka:
    """A throwaway single-node KRaft Kafka broker on ``127.0.0.1`` free ports.

    ``libs_dir``: broker jars (default: ``$JOURNEY_KAFKA_LIBS`` or ``deploy/kafka/fetch.sh``).
    ``data_dir``: where the log segments live; kept after :meth:`stop` when given,
    otherwise a temp dir that is removed. ``log_path``: broker stdout/stderr (default: a
    file in the temp dir, removed on stop).
    """

    NODE_ID: Final = 1

    def __init__(
        self,
        libs_dir: Path | None = None,
        data_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self._libs_dir = libs_dir
        self._data_dir = data_dir
        self._log_path_arg = log_path
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0
        self._tmp: Path | None = None
        self._port: int | None = None
        self._controller_port: int | None = None
        self._atexit_registered = False
        self._cds_pending: tuple[Path, Path] | None = None
        #: Seconds from :meth:`start` to ready, for the last successful start.
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ properties

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, valid after :meth:`start`."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("LocalKafka is not started")
        return self._port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Where the broker writes its console log (None before :meth:`start`)."""
        if self._log_path_arg is not None:
            return self._log_path_arg
        return None if self._tmp is None else self._tmp / "broker.log"

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 90.0) -> None:
        """Format storage, launch the broker and block until it serves Metadata requests.

        Raises ``RuntimeError`` (with the tail of the broker log) if the JVM exits or the
        broker is not ready within ``timeout`` seconds; nothing is left running then.
        """
        with self._lock:
            if self.running:
                return
            if self._proc is not None or self._tmp is not None:
                self.stop()  # leftovers of a broker that died on its own
            started = time.monotonic()
            deadline = started + timeout
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            try:
                self._start(deadline)
            except BaseException:
                self.stop()
                raise
            self.startup_seconds = time.monotonic() - started
            log.info(
                "Kafka broker ready on %s in %.1fs (pid %d)",
                self.bootstrap,
                self.startup_seconds,
                self._proc.pid if self._proc else -1,
            )

    def _start(self, deadline: float) -> None:
        # fetch.sh first: as root it also installs java when missing.
        libs = self._libs_dir if self._libs_dir is not None else resolve_kafka_libs()
        java = find_java()
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"no kafka_2.13-*.jar in {libs}; run deploy/kafka/fetch.sh")
        classpath = f"{libs}{os.sep}*"
        self._tmp = Path(tempfile.mkdtemp(prefix="journey-kafka-"))
        data_dir = self._data_dir if self._data_dir is not None else self._tmp / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        log4j = f"-Dlog4j.configuration={LOG4J_CONFIG.as_uri()}"

        for attempt in range(1, _BIND_RETRIES + 1):
            config = self._write_config(data_dir)
            if attempt == 1 and not (data_dir / "meta.properties").is_file():
                format_storage(java, classpath, log4j, config, deadline)
            self._launch(java, classpath, log4j, config, self._cds_flags(java, libs))
            try:
                self._wait_ready(deadline)
                return
            except _AddressInUse:
                log.warning("Kafka port taken before the broker bound it; retrying with new ports")
                self._reap()
        raise RuntimeError(f"could not bind Kafka ports after {_BIND_RETRIES} attempts")

    def _write_config(self, data_dir: Path) -> Path:
        assert self._tmp is not None
        self._port = free_port()
        self._controller_port = free_port()
        while self._controller_port == self._port:
            self._controller_port = free_port()
        return write_server_properties(
            self._tmp / "server.properties",
            self.NODE_ID,
            self._port,
            self._controller_port,
            data_dir,
        )

    def _cds_flags(self, java: str, libs: Path) -> list[str]:
        """Use the AppCDS archive if there is one, else have this run dump it on exit."""
        self._discard_pending_cds()
        flags, self._cds_pending = cds_launch_flags(java, libs, f"{os.getpid()}.{id(self):x}")
        return flags

    def _finish_cds(self) -> None:
        """After the JVM exited: publish a freshly dumped archive atomically."""
        if self._cds_pending is None:
            return
        pending, archive = self._cds_pending
        self._cds_pending = None
        publish_cds_archive(pending, archive)

    def _discard_pending_cds(self) -> None:
        if self._cds_pending is not None:
            self._cds_pending[0].unlink(missing_ok=True)
            self._cds_pending = None

    def _launch(
        self, java: str, classpath: str, log4j: str, config: Path, extra_flags: list[str]
    ) -> None:
        assert self._tmp is not None
        log_path = self.log_path
        assert log_path is not None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log_path.open("ab")
        self._log_offset = self._log_file.tell()
        cmd = [
            java,
            *BROKER_JVM_FLAGS,
            *extra_flags,
            log4j,
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ]
        log.debug("starting Kafka: %s", " ".join(cmd))
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self._tmp,
            start_new_session=True,
        )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        last_error: Exception | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self._tail()
                if "Address already in use" in tail:
                    raise _AddressInUse
                raise RuntimeError(
                    f"Kafka broker exited with code {code} during start-up; "
                    f"tail of the {self._log_where()}:\n{tail}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"Kafka broker not ready on {self.bootstrap} before the timeout "
                    f"(last probe error: {last_error!r}); tail of the {self._log_where()}:\n"
                    f"{self._tail()}"
                )
            try:
                brokers = metadata_brokers(self.port, timeout=min(2.0, max(0.2, remaining)))
            except (OSError, ProtocolError) as exc:
                last_error = exc
            else:
                if any(node == self.NODE_ID for node, _, _ in brokers):
                    return
                last_error = RuntimeError("broker not yet unfenced (empty metadata)")
            time.sleep(0.1)

    def _log_where(self) -> str:
        # The default log lives in the temp dir, which stop() removes after a failure.
        return f"log {self._log_path_arg}" if self._log_path_arg is not None else "broker log"

    def _tail(self) -> str:
        path = self.log_path
        if path is None:
            return "<no log>"
        if self._log_file is not None:
            self._log_file.flush()
        return read_tail(path, self._log_offset)

    def _reap(self) -> None:
        if self._proc is not None:
            code = terminate_process_group(self._proc, _STOP_GRACE_S, "Kafka broker")
            self._proc = None
            if code is not None and code >= 0:  # exited by itself, not killed by a signal
                self._finish_cds()
        self._discard_pending_cds()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Stop the broker (SIGTERM, SIGKILL after 20 s) and remove temp files. Idempotent."""
        with self._lock:
            if self._proc is not None:
                pid = self._proc.pid
                begun = time.monotonic()
                code = terminate_process_group(self._proc, _STOP_GRACE_S, "Kafka broker")
                log.info(
                    "Kafka broker (pid %d) stopped with code %s in %.1fs",
                    pid,
                    code,
                    time.monotonic() - begun,
                )
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
        where = self.bootstrap if self._port is not None else "not started"
        return f"<LocalKafka {where} running={self.running}>"


class _AddressInUse(Exception):
    pass
