"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback.

Used by the integration tests, the demo and the benchmark. The broker jars come from
``deploy/kafka/fetch.sh`` (Maven Central, cached); the broker runs as a child JVM in
its own process group and is stopped on :meth:`LocalKafka.stop`, on context-manager
exit, and as a last resort from an :mod:`atexit` hook.

:class:`LocalKafka` says what is particular to the broker; the lifecycle (temp dir,
retries on a port clash, stop, atexit) is :class:`engine.local.server.LocalServer`'s.
How the broker is configured (jars, JVM flags, server.properties, storage formatting,
class-data sharing) lives in :mod:`engine.local.kafka_config`, and the readiness probe
in :mod:`engine.local.kafka_probe`.

Standard library only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Final, NamedTuple

from engine.local.kafka_config import (
    BROKER_JVM_FLAGS,
    LOG4J_CONFIG,
    cds_launch_flags,
    find_java,
    format_storage,
    java_command,
    kafka_cluster_id,
    publish_cds_archive,
    resolve_kafka_libs,
    write_server_properties,
)
from engine.local.kafka_probe import ProtocolError, metadata_brokers
from engine.local.ports import LOOPBACK, free_port, terminate_process_group
from engine.local.server import LocalServer

__all__ = ["LocalKafka", "kafka_cluster_id", "metadata_brokers", "resolve_kafka_libs"]

log = logging.getLogger(__name__)

_LOG4J_FLAG: Final = f"-Dlog4j.configuration={LOG4J_CONFIG.as_uri()}"


class _Jvm(NamedTuple):
    """What every broker launch needs: the java binary and the jar directory."""

    java: str
    libs: Path

    @property
    def classpath(self) -> str:
        return f"{self.libs}{os.sep}*"


# --------------------------------------------------------------------------- broker


class LocalKafka(LocalServer[_Jvm]):
    """A throwaway single-node KRaft Kafka broker on ``127.0.0.1`` free ports.

    ``libs_dir``: broker jars (default: ``$JOURNEY_KAFKA_LIBS`` or ``deploy/kafka/fetch.sh``).
    ``data_dir``: where the log segments live; kept after :meth:`stop` when given,
    otherwise a temp dir that is removed. ``log_path``: broker stdout/stderr (default: a
    file in the temp dir, removed on stop). :meth:`stop` sends SIGTERM, SIGKILL after 20 s.
    """

    NODE_ID: Final = 1

    _NAME = "Kafka broker"
    _TMP_PREFIX = "journey-kafka-"
    _LOG_NAME = "broker.log"
    _STOP_GRACE_S = 20.0
    _POLL_S = 0.1
    _log = log

    def __init__(
        self,
        libs_dir: Path | None = None,
        data_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(data_dir, log_path)
        self._libs_dir = libs_dir
        self._controller_port: int | None = None
        self._cds_pending: tuple[Path, Path] | None = None
        self._probe_error: Exception | None = None

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, valid after :meth:`start`."""
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        """Format storage, launch the broker and block until it serves Metadata requests.

        Raises ``RuntimeError`` (with the tail of the broker log) if the JVM exits or the
        broker is not ready within ``timeout`` seconds; nothing is left running then.
        """
        super().start(timeout)

    # ------------------------------------------------------------------ LocalServer hooks

    def _address(self) -> str:
        return self.bootstrap

    def _resolve(self) -> _Jvm:
        # fetch.sh first: as root it also installs java when missing.
        libs = self._libs_dir if self._libs_dir is not None else resolve_kafka_libs()
        java = find_java()
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"no kafka_2.13-*.jar in {libs}; run deploy/kafka/fetch.sh")
        return _Jvm(java, libs)

    def _command(
        self, tool: _Jvm, attempt: int, data_dir: Path, deadline: float
    ) -> tuple[list[str], Path]:
        assert self._tmp is not None
        config = self._write_config(data_dir)
        if attempt == 1 and not (data_dir / "meta.properties").is_file():
            format_storage(tool.java, tool.classpath, _LOG4J_FLAG, config, deadline)
        self._probe_error = None
        jvm_flags = [*BROKER_JVM_FLAGS, *self._cds_flags(tool)]
        cmd = java_command(
            tool.java, jvm_flags, _LOG4J_FLAG, tool.classpath, "kafka.Kafka", str(config)
        )
        return cmd, self._tmp

    def _ready(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(
                f"Kafka broker not ready on {self.bootstrap} before the timeout "
                f"(last probe error: {self._probe_error!r}); {self._output_where()}:\n"
                f"{self._tail()}"
            )
        try:
            brokers = metadata_brokers(self.port, timeout=min(2.0, max(0.2, remaining)))
        except (OSError, ProtocolError) as exc:
            self._probe_error = exc
            return False
        if any(node == self.NODE_ID for node, _, _ in brokers):
            return True
        self._probe_error = RuntimeError("broker not yet unfenced (empty metadata)")
        return False

    def _stopping(self, proc: subprocess.Popen[bytes]) -> None:
        begun = time.monotonic()
        code = terminate_process_group(proc, self._STOP_GRACE_S, self._NAME)
        log.info(
            "Kafka broker (pid %d) stopped with code %s in %.1fs",
            proc.pid,
            code,
            time.monotonic() - begun,
        )

    def _after_reap(self, code: int | None) -> None:
        if code is not None and code >= 0:  # exited by itself, not killed by a signal
            self._finish_cds()
        self._discard_pending_cds()

    # ------------------------------------------------------------------ broker set-up

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

    def _cds_flags(self, tool: _Jvm) -> list[str]:
        """Use the AppCDS archive if there is one, else have this run dump it on exit."""
        self._discard_pending_cds()
        run_tag = f"{os.getpid()}.{id(self):x}"
        flags, self._cds_pending = cds_launch_flags(tool.java, tool.libs, run_tag)
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
