"""Run ``journey worker`` as a real subprocess for integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine.local.ports import free_port, terminate_process_group
from engine.settings import Settings


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path, module: str = "engine.cli") -> None:
        """``module``: what ``python -m`` runs with the argument ``worker``."""
        self.settings = settings.with_(web_port=free_port())
        self.module = module
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self.returncode: int | None = None

    def start(self, timeout: float = 90.0) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker"],
            env={**os.environ, **self.settings.to_env()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "[^Worker]: Ready" in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        with self.log_path.open("rb") as fh:
            fh.seek(self._offset)
            return fh.read().decode("utf-8", "replace")

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the worker to exit by itself; its exit code, or None if it did not."""
        if self.proc is None:
            return self.returncode
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        self.proc = None
        return self.returncode

    def stop(self) -> int | None:
        proc = self.proc
        if proc is None:
            return self.returncode
        terminate_process_group(proc, 30.0, "worker")
        self.proc = None
        self.returncode = proc.returncode
        return proc.returncode
