"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback.

Used by the integration tests, the demo and the benchmark. The broker jars come from
``deploy/kafka/fetch.sh`` (Maven Central, cached); the broker runs as a child JVM in
its own process group and is stopped on :meth:`LocalKafka.stop`, on context-manager
exit, and as a last resort from an :mod:`atexit` hook.

Standard library only.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from engine.local.ports import LOOPBACK, free_port, read_tail, terminate_process_group

__all__ = ["LocalKafka", "kafka_cluster_id", "metadata_brokers", "resolve_kafka_libs"]

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
FETCH_SCRIPT: Final = REPO_ROOT / "deploy" / "kafka" / "fetch.sh"
LOG4J_CONFIG: Final = REPO_ROOT / "deploy" / "kafka" / "log4j.properties"

#: Environment override for the jar directory (skips ``fetch.sh``).
LIBS_ENV: Final = "JOURNEY_KAFKA_LIBS"

#: Set to "0" to disable the class-data-sharing archive (see :func:`_cds_archive_path`).
CDS_ENV: Final = "JOURNEY_KAFKA_CDS"

#: JVM flags for the broker: Kafka's own GC defaults (kafka-run-class.sh). Measured on
#: 2 cores, SerialGC and C1-only (-XX:TieredStopAtLevel=1) made no difference to start-up
#: beyond noise, and C1-only would slow the benchmark, so neither is used. What does
#: help (~1.2 s of ~4 s) is an AppCDS archive, added at launch time.
BROKER_JVM_FLAGS: Final = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
#: The one-shot storage formatter only needs to start fast.
TOOL_JVM_FLAGS: Final = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

_STOP_GRACE_S: Final = 20.0
_BIND_RETRIES: Final = 3


def resolve_kafka_libs() -> Path:
    """Directory holding the broker jars: ``$JOURNEY_KAFKA_LIBS`` or the output of fetch.sh."""
    override = os.environ.get(LIBS_ENV)
    if override:
        return Path(override)
    log.info("resolving Kafka broker jars via %s", FETCH_SCRIPT)
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(FETCH_SCRIPT)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            check=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"{FETCH_SCRIPT} failed with exit code {exc.returncode}; see its messages above"
        ) from exc
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{FETCH_SCRIPT} printed no libs directory")
    libs = Path(lines[-1])
    log.info("Kafka jars in %s (%.1fs)", libs, time.monotonic() - started)
    return libs


def kafka_cluster_id() -> str:
    """A random cluster id in Kafka's format (base64url UUID, no padding, no leading '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def _cds_archive_path(java: str, libs: Path) -> Path | None:
    """Where the broker's dynamic AppCDS archive for this JDK + jar set lives (or None).

    The JVM validates an archive against its own build and the class path and silently
    runs without it on a mismatch, so the key only has to change when the jars or the
    JDK change: it hashes the java binary path and every jar's name, size and mtime.
    """
    if os.environ.get(CDS_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return None
    digest = hashlib.sha256(os.path.realpath(java).encode())
    try:
        for jar in sorted(libs.glob("*.jar")):
            st = jar.stat()
            digest.update(f"{jar.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    except OSError:
        return None
    cache = Path(os.environ.get("JOURNEY_CACHE_DIR") or Path.home() / ".cache" / "journey-engine")
    return cache / "cds" / f"kafka-broker-{digest.hexdigest()[:16]}.jsa"


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise RuntimeError(
            "java not found on PATH (and no usable $JAVA_HOME); run deploy/kafka/fetch.sh as "
            "root to install it, or install a Java 17+ runtime (default-jre-headless)"
        )
    return found


# --------------------------------------------------------------------------- protocol


class _ProtocolError(Exception):
    pass


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise _ProtocolError("connection closed by broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if self._pos + size > len(self._data):
            raise _ProtocolError("truncated response")
        values = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += size
        return values

    def int16(self) -> int:
        return self._take(">h")[0]

    def int32(self) -> int:
        return self._take(">i")[0]

    def nullable_string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        if self._pos + length > len(self._data):
            raise _ProtocolError("truncated string")
        raw = self._data[self._pos : self._pos + length]
        self._pos += length
        return raw.decode("utf-8")


def metadata_brokers(
    port: int, host: str = LOOPBACK, timeout: float = 2.0
) -> list[tuple[int, str, int]]:
    """Send a real Metadata (v4, no topics) request and return ``(node_id, host, port)``.

    A KRaft broker answers this only once request processing is enabled, and lists
    only *unfenced* brokers, so a non-empty answer means clients can use it. Raises
    ``OSError`` (including timeouts) or an internal protocol error when it cannot.
    """
    correlation_id = 0x4A45  # arbitrary
    client_id = b"journey-local"
    header = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # topics: empty array (none); allow_auto_topic_creation=false
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 0 < size < 1 << 20:
            raise _ProtocolError(f"implausible response size {size}")
        reader = _Reader(_recv_exact(sock, size))
    if reader.int32() != correlation_id:
        raise _ProtocolError("correlation id mismatch")
    reader.int32()  # throttle_time_ms
    brokers: list[tuple[int, str, int]] = []
    for _ in range(reader.int32()):
        node_id = reader.int32()
        broker_host = reader.nullable_string() or ""
        broker_port = reader.int32()
        reader.nullable_string()  # rack
        brokers.append((node_id, broker_host, broker_port))
    return brokers


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
        java = _find_java()
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
                self._format_storage(java, classpath, log4j, config, deadline)
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
        port, cport = self._port, self._controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.NODE_ID),
            "controller.quorum.voters": f"{self.NODE_ID}@{LOOPBACK}:{cport}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            # Small footprint on a 2-core box.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "4",
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
            # Faster unfencing after start-up (default heartbeat is 2 s).
            "broker.heartbeat.interval.ms": "500",
        }
        path = self._tmp / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()), encoding="utf-8")
        return path

    def _format_storage(
        self, java: str, classpath: str, log4j: str, config: Path, deadline: float
    ) -> None:
        cmd = [
            java,
            *TOOL_JVM_FLAGS,
            log4j,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            kafka_cluster_id(),
            "-c",
            str(config),
        ]
        try:
            result = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=max(5.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError("kafka StorageTool format timed out") from exc
        output = result.stdout.decode("utf-8", errors="replace")
        if result.returncode != 0:
            raise RuntimeError(f"kafka StorageTool format failed ({result.returncode}):\n{output}")
        log.debug("StorageTool: %s", output.strip())

    def _cds_flags(self, java: str, libs: Path) -> list[str]:
        """Use the AppCDS archive if there is one, else have this run dump it on exit."""
        self._discard_pending_cds()
        archive = _cds_archive_path(java, libs)
        if archive is None:
            return []
        try:
            if archive.is_file() and archive.stat().st_size > 0:
                return [f"-XX:SharedArchiveFile={archive}"]
            archive.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return []
        if not os.access(archive.parent, os.W_OK):
            return []
        pending = archive.with_name(f"{archive.stem}.{os.getpid()}.{id(self):x}.tmp")
        self._cds_pending = (pending, archive)
        log.info("no class-data-sharing archive yet; this broker run will write %s", archive)
        # The dump lists every class it skips (old class-file versions...): keep it quiet.
        return [f"-XX:ArchiveClassesAtExit={pending}", "-Xlog:cds=off,cds+dynamic=off"]

    def _finish_cds(self) -> None:
        """After the JVM exited: publish a freshly dumped archive atomically."""
        if self._cds_pending is None:
            return
        pending, archive = self._cds_pending
        self._cds_pending = None
        try:
            if pending.is_file() and pending.stat().st_size > 0:
                os.replace(pending, archive)
                log.info("saved class-data-sharing archive %s", archive)
        except OSError as exc:
            log.warning("could not save class-data-sharing archive %s: %s", archive, exc)
        finally:
            pending.unlink(missing_ok=True)

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
            except (OSError, _ProtocolError) as exc:
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
