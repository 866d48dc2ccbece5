"""Contender subprocesses: start, wait for a ready line, read resident memory, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

#: What a Faust worker logs once its tables are recovered and it starts processing.
FAUST_READY = "[^Worker]: Ready"
#: What the raw loop prints once its consumer and producer are started.
RAW_READY = "raw: Ready"

REPO_ROOT = Path(__file__).resolve().parents[2]


class ProcessFailed(RuntimeError):
    """A contender exited or did not get ready in time."""


class Proc:
    """One contender process with its log file; the clock starts at :meth:`start`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        ready_line: str = FAUST_READY,
    ) -> None:
        self.name = name
        self.argv = [sys.executable, *argv]
        self.env = {**os.environ, **env, "PYTHONPATH": _pythonpath()}
        self.log_path = log_path
        self.ready_line = ready_line
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_at: float | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessFailed(f"{self.name} is not started")
        return self.proc.pid

    @property
    def startup_s(self) -> float | None:
        """Seconds from process start to the ready line (None while not ready)."""
        return None if self.ready_at is None else self.ready_at - self.started_at

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ProcessFailed(f"{self.name} exited with {code}:\n{self.log()[-4000:]}")

    def poll_ready(self) -> bool:
        """True once the ready line is in the log; raises if the process died."""
        if self.ready_at is not None:
            return True
        if self.ready_line in self.log():
            self.ready_at = time.monotonic()
            return True
        self.check_alive()
        return False

    def wait_ready(self, timeout: float = 180.0, interval: float = 0.05) -> float:
        """Block until ready; returns the seconds from start to ready."""
        deadline = time.monotonic() + timeout
        while not self.poll_ready():
            if time.monotonic() > deadline:
                raise ProcessFailed(
                    f"{self.name} not ready after {timeout:.0f}s:\n{self.log()[-4000:]}"
                )
            time.sleep(interval)
        assert self.startup_s is not None
        return self.startup_s

    def rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmHWM") * 1024

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole process group after ``timeout``."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Faust may leave helper children in the group: make sure none outlive it.
        _signal_group(proc.pid, signal.SIGKILL)
        self.proc = None
        return proc.returncode


def stop_all(procs: Sequence[Proc]) -> None:
    for proc in procs:
        proc.stop()


_TICK = os.sysconf("SC_CLK_TCK")


class CpuSnapshot:
    """CPU seconds used so far by each process and by the whole machine (all cores)."""

    def __init__(self, procs: Sequence[Proc], *, also: Sequence[int] = ()) -> None:
        """``also``: more process ids, after ``procs`` in :meth:`cores_since`."""
        self.at = time.monotonic()
        pids = [*(p.pid for p in procs), *also]
        self.procs = [_proc_cpu_s(pid) for pid in pids]
        self.machine = _machine_busy_s()
        #: Times each process's main thread was preempted (involuntary context switches).
        self.preempted = [_preempted(pid) for pid in pids]

    def cores_since(self, earlier: CpuSnapshot) -> tuple[list[float], float]:
        """Cores busy on average between the snapshots: per process, and machine-wide."""
        span = max(self.at - earlier.at, 1e-6)
        per_proc = [(b - a) / span for a, b in zip(earlier.procs, self.procs, strict=True)]
        return per_proc, (self.machine - earlier.machine) / span

    def preempted_per_s_since(self, earlier: CpuSnapshot) -> list[float]:
        """Per process: its main thread's involuntary context switches per second."""
        span = max(self.at - earlier.at, 1e-6)
        return [(b - a) / span for a, b in zip(earlier.preempted, self.preempted, strict=True)]


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _preempted(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("nonvoluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def listening_pid(port: int) -> int | None:
    """The process of this machine listening on TCP ``port``, or None (another
    machine's, or not visible to this user)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                rows = fh.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            # local address "HEXIP:HEXPORT", state 0A = LISTEN, inode in column 9
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            fds = f"/proc/{entry}/fd"
            for fd in os.listdir(fds):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fds}/{fd}") in inodes:
                        return int(entry)
    return None


#: Host names of this machine in a bootstrap address or Redis URL.
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def local_services(bootstrap: str, redis_url: str) -> dict[str, int]:
    """``{"broker": pid, "redis_server": pid}`` for those listening on this machine
    at the first bootstrap address and the Redis URL (the others left out)."""
    out: dict[str, int] = {}
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    url = urlsplit(redis_url)
    for name, where, number in (
        ("broker", host, port),
        ("redis_server", url.hostname or "", str(url.port or 6379)),
    ):
        if where in _LOOPBACK and number.isdigit():
            pid = listening_pid(int(number))
            if pid is not None:
                out[name] = pid
    return out


def _machine_busy_s() -> float:
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ProcessFailed(f"no {field} in /proc/{pid}/status")


def _pythonpath() -> str:
    current = os.environ.get("PYTHONPATH", "")
    parts = [str(REPO_ROOT), *(p for p in current.split(os.pathsep) if p)]
    return os.pathsep.join(dict.fromkeys(parts))
