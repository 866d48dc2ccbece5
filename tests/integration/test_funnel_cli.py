"""``journey funnel`` against the real broker: stage changes produced with
engine.messages, read back from the beginning to the end offsets."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.cli import main
from engine.ingest import decode
from engine.journey import CustomerState, StageChanged, StageMachine, load_preset
from engine.journey.funnel import Funnel
from engine.messages import dumps, stage_change
from engine.simulate import encode, journeys
from tests.bench.kafka_util import create_topic
from tests.integration.kafka_io import produce

SAAS = load_preset("saas")
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def simulated_changes(customers: int) -> list[StageChanged]:
    """Stage changes of simulated customers, applied by the real stage machine."""
    machine, rng = StageMachine(SAAS), random.Random(3)
    states: dict[str, CustomerState] = {}
    changes: list[StageChanged] = []
    for at, _key, msg in journeys(customers, seed=11, now=NOW):
        event = decode(encode(at, msg, rng), [])
        state, effects = machine.apply(states.get(event.customer_id), event, at)
        states[event.customer_id] = state
        changes += [e for e in effects if isinstance(e, StageChanged)]
    return changes


def test_funnel_from_the_stage_changes_topic(
    kafka_bootstrap: str,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"f{unique_name}."
    topic = f"{prefix}journey.stage-changes"
    changes = simulated_changes(300)
    truth = Funnel([SAAS])
    truth.add_all(changes)
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]] = [
        (c.customer_id.encode(), dumps(stage_change(c, NOW)), None) for c in changes
    ]
    records.insert(5, (b"x", b"not json", None))
    records.append((b"y", b'{"customer_id": "y"}', None))
    asyncio.run(create_topic(kafka_bootstrap, topic, 3))
    asyncio.run(produce(kafka_bootstrap, topic, records))

    monkeypatch.setenv("JOURNEY_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("JOURNEY_TOPIC_PREFIX", prefix)
    html, doc = tmp_path / "funnel.html", tmp_path / "funnel.json"
    assert main(["funnel", "--html", str(html), "--json", str(doc)]) == 0
    out, err = capsys.readouterr()

    assert "left out 2 records that are not stage changes" in err
    written = json.loads(doc.read_text())
    assert written == truth.to_dict()
    saas = written["models"]["saas"]
    assert saas["changes"] == len(changes)
    assert f"({len(records):,} records)" in out
    for stage in saas["stages"]:
        if stage["reached"]:
            assert any(
                line.split()[:2] == [stage["stage"], f"{stage['reached']:,}"]
                for line in out.splitlines()
            ), stage["stage"]
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert "http://" not in page  # self-contained
    assert "https://" not in page
    top = max(s["reached"] for s in saas["stages"])
    assert f">{top:,}</text>" in page

    # The JSON it wrote is a funnel source too, and prints the same table.
    assert main(["funnel", "--from", str(doc)]) == 0
    again, _ = capsys.readouterr()
    assert again.split("\n", 1)[1] == out.split("\n", 1)[1].split("\nwrote ")[0] + "\n"


def test_a_missing_topic_is_a_clear_error(
    kafka_bootstrap: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOURNEY_KAFKA_BOOTSTRAP", kafka_bootstrap)
    assert main(["funnel", "--topic", f"missing-{unique_name}", "--timeout", "10"]) == 1
    assert f"topic 'missing-{unique_name}' does not exist" in capsys.readouterr().err


def test_a_file_that_is_not_a_funnel_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    assert main(["funnel", "--from", str(path)]) == 1
    assert "not a funnel document" in capsys.readouterr().err


def test_funnel_from_a_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a worker's GET /funnel would serve, fetched over HTTP."""
    import http.server
    import threading
    from functools import partial

    f = Funnel([SAAS])
    f.add_all(simulated_changes(40))
    (tmp_path / "funnel").write_text(json.dumps(f.to_dict()))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/funnel"
        assert main(["funnel", "--from", url, "--json", str(tmp_path / "copy.json")]) == 0
        assert f"funnel from {url}" in capsys.readouterr().out
        assert json.loads((tmp_path / "copy.json").read_text()) == f.to_dict()
        assert main(["funnel", "--from", url + "-missing"]) == 1
        assert "404" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()
