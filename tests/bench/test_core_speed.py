"""The core speed microbenchmark at a tiny size, so it never rots. No timing is asserted."""

from __future__ import annotations

import json

import pytest

from tests.bench import core_speed


def test_core_speed_reports_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert core_speed.main(["--events", "300", "--customers", "40", "--repeat", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"] == 300
    for key in (
        "processor_events_per_s",
        "processor_us_per_event",
        "decode_us_per_event",
        "apply_us_per_event",
        "encode_us_per_state",
    ):
        assert type(report[key]) in (int, float), key
        assert report[key] > 0, key
    # Every customer changed by a batch is stored once per batch: at least one, at
    # most one per event.
    assert 40 <= report["stored_states"] <= 300


def test_core_speed_rejects_a_non_positive_count() -> None:
    with pytest.raises(SystemExit):
        core_speed.parse_args(["--events", "0"])
