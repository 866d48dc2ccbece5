"""README command 1: `journey demo` runs the whole stack and shows customers per stage."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.local.ports import is_port_open

pytestmark = pytest.mark.integration


def test_demo_shows_stages_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "demo", "--duration", "0", "--customers", "300",
         "--rate", "300"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"stage changes=(\d+)", line)
            if found and int(found.group(1)) > 50:
                break
            assert time.monotonic() < deadline, "".join(lines[-40:])
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output[-3000:]
    final = output[output.index("FINAL") :]
    counts = dict(re.findall(r"^\s+(\w+)\s+(\d+)\s", final, re.MULTILINE))
    assert set(counts) >= {"discovery", "evaluation", "acquisition", "usage", "churned"}
    assert sum(int(v) for v in counts.values()) > 0
    published = int(re.search(r"published=(\d+)", final).group(1))  # type: ignore[union-attr]
    processed = int(re.search(r"processed=(\d+)", final).group(1))  # type: ignore[union-attr]
    assert published > 0
    assert processed == published
    # The Redis read model: the profile of the customer who moved last.
    profile = re.search(r"Redis profile .*customer:(\S+):\n\s+stage=(\w+) .* events=(\d+)", final)
    assert profile is not None, final
    assert profile.group(2) in counts
    assert int(profile.group(3)) >= 1
    assert "stopped broker, redis and worker" in output
    # Nothing the demo started is left: broker and redis ports closed, worker gone.
    ports = re.search(r"broker 127\.0\.0\.1:(\d+) and redis redis://127\.0\.0\.1:(\d+)", output)
    assert ports is not None, output[:2000]
    for port in ports.groups():
        assert not is_port_open(int(port))
    worker_pid = int(re.search(r"worker pid (\d+)", output).group(1))  # type: ignore[union-attr]
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
