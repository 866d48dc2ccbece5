"""Talking to a running worker's web server in tests: JSON answers checked against the
committed OpenAPI document, metric samples, waiting for conditions."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.worker_proc import WorkerProcess

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "engine" / "worker" / "openapi.json"
OPENAPI: dict[str, Any] = json.loads(OPENAPI_PATH.read_text("utf-8"))


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return json.loads(self.body)


def base(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.settings.web_port}"


def _get(url: str) -> Answer:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read())


async def get(worker: WorkerProcess | str, path: str) -> Answer:
    root = worker if isinstance(worker, str) else base(worker)
    return await asyncio.to_thread(_get, root + path)


def conforms(doc: Any, schema: str) -> None:
    """``doc`` is valid against ``components/schemas/<schema>`` of the OpenAPI document."""
    wrapper = {"components": OPENAPI["components"], "$ref": f"#/components/schemas/{schema}"}
    validator = Draft202012Validator(wrapper, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


async def get_doc(worker: WorkerProcess | str, path: str, status: int, schema: str) -> Any:
    """GET ``path``, expect ``status`` and a JSON body valid against ``schema``."""
    answer = await get(worker, path)
    assert answer.status == status, (path, answer.status, answer.body[:500])
    doc = answer.json()
    conforms(doc, schema)
    return doc


async def samples(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the worker's /metrics page: {(name, sorted labels): value}."""
    answer = await get(worker, "/metrics")
    assert answer.status == 200
    out = {}
    for family in text_string_to_metric_families(answer.body.decode("utf-8")):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def customers_gauge(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[str, int]:
    """``journey_customers`` by stage (non-zero only)."""
    out = {}
    for (name, labels), value in metrics.items():
        if name == "journey_customers" and value:
            out[dict(labels)["stage"]] = int(value)
    return out


def total(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **want: str
) -> float:
    return sum(
        v
        for (n, labels), v in metrics.items()
        if n == name and all(dict(labels).get(k) == w for k, w in want.items())
    )


async def until(
    check: Callable[[], Awaitable[Any]], timeout: float = 30.0, every: float = 0.2
) -> Any:
    """Call ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met in {timeout}s; last: {last!r}")
