"""How the local Kafka broker is set up: jars, java, JVM flags, server.properties, storage.

* :func:`resolve_kafka_libs` / :func:`find_java` - the broker jars and the JVM to run them;
  :func:`java_command` - the command line of a Kafka class on them.
* :func:`write_server_properties` - a single-node KRaft (broker+controller) config.
* :func:`format_storage` - the one-shot ``StorageTool format`` before a first start.
* :func:`cds_launch_flags` / :func:`publish_cds_archive` - the class-data-sharing
  (AppCDS) archive that shortens broker start-up.

Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from engine.local.ports import LOOPBACK

__all__ = [
    "BROKER_JVM_FLAGS",
    "CDS_ENV",
    "FETCH_SCRIPT",
    "INDEX_BYTES",
    "LIBS_ENV",
    "LOG4J_CONFIG",
    "TOOL_JVM_FLAGS",
    "cds_archive_path",
    "cds_launch_flags",
    "find_java",
    "format_storage",
    "java_command",
    "kafka_cluster_id",
    "publish_cds_archive",
    "resolve_kafka_libs",
    "write_server_properties",
]

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
FETCH_SCRIPT: Final = REPO_ROOT / "deploy" / "kafka" / "fetch.sh"
LOG4J_CONFIG: Final = REPO_ROOT / "deploy" / "kafka" / "log4j.properties"

#: Environment override for the jar directory (skips ``fetch.sh``).
LIBS_ENV: Final = "JOURNEY_KAFKA_LIBS"

#: Set to "0" to disable the class-data-sharing archive (see :func:`cds_archive_path`).
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
#: ``log.index.size.max.bytes`` of the local broker (see write_server_properties).
INDEX_BYTES: Final = 256 * 1024

#: The one-shot storage formatter only needs to start fast.
TOOL_JVM_FLAGS: Final = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


# --------------------------------------------------------------------------- jars and java


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


def java_command(
    java: str, jvm_flags: Iterable[str], log4j: str, classpath: str, main: str, *args: str
) -> list[str]:
    """The command line that runs Kafka's ``main`` class on the jars in ``classpath``."""
    return [java, *jvm_flags, log4j, "-cp", classpath, main, *args]


def find_java() -> str:
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


# --------------------------------------------------------------------------- storage


def kafka_cluster_id() -> str:
    """A random cluster id in Kafka's format (base64url UUID, no padding, no leading '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def write_server_properties(
    path: Path, node_id: int, port: int, controller_port: int, data_dir: Path
) -> Path:
    """Write a single-node KRaft (broker+controller) ``server.properties`` to ``path``."""
    cport = controller_port
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{LOOPBACK}:{cport}",
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
        # Every topic is made on purpose, with its partition count: the catalog's by
        # `journey topics create`, the changelogs by Faust. A topic made on first use
        # gets num.partitions, and a changelog made so before the first worker breaks
        # the table's co-partitioning.
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        # A segment's offset and time indexes are sparse files of this size, memory
        # mapped. The first touch of a new one faults it in with the device's
        # read-ahead, and on a kernel with large page-cache folios the holes are
        # zeroed: at the 10 MiB default and 8 MiB of read-ahead, the ~40 new
        # partitions of a worker's topics cost the broker ~1.4 CPU-seconds of
        # memset within 2-4 s, seconds after their first writes (when each passes
        # index.interval.bytes); the live latency's p99 went to 0.7-1 s then.
        # 256 KiB holds an index entry per 4 KiB for ~85 MiB of log per segment.
        "log.index.size.max.bytes": str(INDEX_BYTES),
        # Small footprint on a 2-core box.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        # Faster unfencing after start-up (default heartbeat is 2 s).
        "broker.heartbeat.interval.ms": "500",
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()), encoding="utf-8")
    return path


def format_storage(java: str, classpath: str, log4j: str, config: Path, deadline: float) -> None:
    """Run ``kafka.tools.StorageTool format`` with a fresh cluster id for ``config``."""
    args = ("format", "-t", kafka_cluster_id(), "-c", str(config))
    cmd = java_command(java, TOOL_JVM_FLAGS, log4j, classpath, "kafka.tools.StorageTool", *args)
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


# --------------------------------------------------------------------------- class-data sharing


def cds_archive_path(java: str, libs: Path) -> Path | None:
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


def cds_launch_flags(
    java: str, libs: Path, run_tag: str
) -> tuple[list[str], tuple[Path, Path] | None]:
    """Use the AppCDS archive if there is one, else have this run dump it on exit.

    Returns the extra JVM flags and, when this run is to dump the archive, the pair
    ``(pending, archive)``: the JVM writes ``pending`` (unique to ``run_tag``) at exit
    and :func:`publish_cds_archive` moves it to ``archive`` afterwards.
    """
    archive = cds_archive_path(java, libs)
    if archive is None:
        return [], None
    try:
        if archive.is_file() and archive.stat().st_size > 0:
            return [f"-XX:SharedArchiveFile={archive}"], None
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return [], None
    if not os.access(archive.parent, os.W_OK):
        return [], None
    pending = archive.with_name(f"{archive.stem}.{run_tag}.tmp")
    log.info("no class-data-sharing archive yet; this broker run will write %s", archive)
    # The dump lists every class it skips (old class-file versions...): keep it quiet.
    flags = [f"-XX:ArchiveClassesAtExit={pending}", "-Xlog:cds=off,cds+dynamic=off"]
    return flags, (pending, archive)


def publish_cds_archive(pending: Path, archive: Path) -> None:
    """After the JVM exited: publish a freshly dumped archive atomically."""
    try:
        if pending.is_file() and pending.stat().st_size > 0:
            os.replace(pending, archive)
            log.info("saved class-data-sharing archive %s", archive)
    except OSError as exc:
        log.warning("could not save class-data-sharing archive %s: %s", archive, exc)
    finally:
        pending.unlink(missing_ok=True)
