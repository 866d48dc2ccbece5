"""The incremental funnel: reach, conversion, drop-off, time in stage, JSON round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from engine.journey import StageChanged, StageMachine, load_preset
from engine.journey.events import Event, EventType
from engine.journey.funnel import TIME_BOUNDS_S, Funnel, FunnelError, StageTally
from engine.messages import BadMessage, parse_stage_change, stage_change

SAAS = load_preset("saas")
T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = 3600.0


def move(
    cid: str,
    frm: str | None,
    to: str,
    visit: int = 1,
    spent: float | None = None,
    model: str = "saas",
) -> StageChanged:
    return StageChanged(cid, frm, to, T0, model, 1, "r", "m", "e", visit, spent)


def stage(doc: dict, model: str, name: str) -> dict:  # type: ignore[type-arg]
    return next(s for s in doc["models"][model]["stages"] if s["stage"] == name)


@pytest.fixture
def funnel() -> Funnel:
    f = Funnel([SAAS])
    # Four customers discover; three evaluate (one of them skips ahead to
    # acquisition), one drops to at_risk from discovery, one comes back.
    f.add_all(
        [
            move("a", None, "discovery"),
            move("b", None, "discovery"),
            move("c", None, "discovery"),
            move("d", None, "discovery"),
            move("a", "discovery", "evaluation", spent=2 * HOUR),
            move("b", "discovery", "evaluation", spent=30.0),
            move("c", "discovery", "acquisition", spent=3 * 86400.0),
            move("d", "discovery", "at_risk", spent=20 * 86400.0),
            move("a", "evaluation", "discovery", visit=2, spent=HOUR),
            move("a", "discovery", "evaluation", visit=2, spent=HOUR),
            move("b", "evaluation", "churned", spent=5 * HOUR),
        ]
    )
    return f


def test_reach_entries_exits_and_customers_in_stage(funnel: Funnel) -> None:
    doc = funnel.to_dict()
    discovery = stage(doc, "saas", "discovery")
    assert (discovery["entries"], discovery["reached"], discovery["exits"]) == (5, 4, 5)
    assert discovery["in_stage"] == 0
    evaluation = stage(doc, "saas", "evaluation")
    assert (evaluation["entries"], evaluation["reached"], evaluation["in_stage"]) == (3, 2, 1)
    assert stage(doc, "saas", "acquisition")["in_stage"] == 1


def test_conversion_counts_skipping_ahead_and_drop_off_leaving_the_path(funnel: Funnel) -> None:
    doc = funnel.to_dict()
    discovery = stage(doc, "saas", "discovery")
    assert discovery["forward"] == 4  # three to evaluation (a twice), one to acquisition
    assert discovery["conversion"] == pytest.approx(4 / 5)
    assert discovery["drop_off"] == {"at_risk": 1}
    assert discovery["drop_off_rate"] == pytest.approx(1 / 5)
    evaluation = stage(doc, "saas", "evaluation")
    assert evaluation["backward"] == 1
    assert evaluation["drop_off"] == {"churned": 1}
    step = doc["models"]["saas"]["steps"][0]
    assert (step["from"], step["to"], step["moved_on"], step["direct"]) == (
        "discovery",
        "evaluation",
        4,
        3,
    )
    assert step["direct_conversion"] == pytest.approx(3 / 5)
    assert [s["from"] for s in doc["models"]["saas"]["steps"]] == list(SAAS.path[:-1])
    assert stage(doc, "saas", "at_risk")["on_path"] is False
    assert stage(doc, "saas", "at_risk")["conversion"] is None
    assert stage(doc, "saas", "advocacy")["conversion"] is None  # the end of the path


def test_stages_come_in_path_order_then_the_rest(funnel: Funnel) -> None:
    names = [s["stage"] for s in funnel.to_dict()["models"]["saas"]["stages"]]
    assert names[: len(SAAS.path)] == list(SAAS.path)
    assert set(names[len(SAAS.path) :]) == {"at_risk", "churned"}


def test_time_in_stage_histogram_and_quantiles(funnel: Funnel) -> None:
    t = stage(funnel.to_dict(), "saas", "discovery")["time_in_stage"]
    assert t["count"] == 5
    assert t["sum_s"] == pytest.approx(2 * HOUR + 30 + 3 * 86400 + 20 * 86400 + HOUR)
    assert t["counts"][0] == 1  # 30 s
    assert t["counts"][TIME_BOUNDS_S.index(HOUR)] == 1
    assert t["counts"][TIME_BOUNDS_S.index(6 * HOUR)] == 1
    assert t["counts"][TIME_BOUNDS_S.index(3 * 86400)] == 1
    assert t["counts"][TIME_BOUNDS_S.index(30 * 86400)] == 1
    assert 10 * 60 <= t["p50_s"] <= 6 * HOUR


def test_quantile_interpolates_within_a_bucket() -> None:
    tally = StageTally()
    for _ in range(4):
        tally.observe_time(HOUR * 2)  # all in (1 h, 6 h]
    assert tally.time_quantile(0.5) == pytest.approx(HOUR + 5 * HOUR * 0.5)
    assert StageTally().time_quantile(0.5) is None
    tally.observe_time(10**9)
    assert tally.time_quantile(1.0) == TIME_BOUNDS_S[-1]


def test_stalls_are_set_by_the_caller(funnel: Funnel) -> None:
    funnel.set_stalled("saas", {"evaluation": 7})
    assert stage(funnel.to_dict(), "saas", "evaluation")["stalled"] == 7
    funnel.set_stalled("saas", {"onboarding": 1})
    assert stage(funnel.to_dict(), "saas", "evaluation")["stalled"] == 0


def test_models_are_kept_apart_and_an_unknown_model_still_counts() -> None:
    f = Funnel([SAAS])
    f.add(move("a", None, "discovery"))
    f.add(move("x", None, "seen", model="custom"))
    f.add(move("x", "seen", "bought", model="custom", spent=5.0))
    doc = f.to_dict()
    assert set(doc["models"]) == {"saas", "custom"}
    custom = doc["models"]["custom"]
    assert custom["path"] == []
    assert [s["stage"] for s in custom["stages"]] == ["seen", "bought"]
    assert stage(doc, "custom", "seen")["conversion"] is None


def test_json_round_trip_and_merge(funnel: Funnel) -> None:
    doc = json.loads(json.dumps(funnel.to_dict()))
    again = Funnel.from_dict(doc)
    assert again.to_dict() == funnel.to_dict()
    # Two workers' funnels add up to the funnel of all their changes.
    other = Funnel([SAAS])
    other.add(move("e", None, "discovery"))
    other.add(move("e", "discovery", "evaluation", spent=60.0))
    again.merge(other)
    both = Funnel([SAAS])
    both.merge(funnel)
    both.add(move("e", None, "discovery"))
    both.add(move("e", "discovery", "evaluation", spent=60.0))
    assert again.to_dict() == both.to_dict()


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"version": 2, "models": {}},
        {"version": 1, "time_bounds_s": [1, 2], "models": {}},
        {"version": 1, "time_bounds_s": list(TIME_BOUNDS_S), "models": {"m": {"path": []}}},
    ],
)
def test_a_document_that_is_not_a_funnel_is_refused(doc: object) -> None:
    with pytest.raises(FunnelError):
        Funnel.from_dict(doc)


def test_fed_by_the_machine_and_by_stage_change_messages() -> None:
    """Effects of the stage machine and the same changes read back from their wire form."""
    machine = StageMachine(SAAS)
    direct, from_wire = Funnel([SAAS]), Funnel([SAAS])
    state = None
    for i, name in enumerate(["Signed Up", "Trial Started", "Subscription Started"]):
        at = T0 + timedelta(days=i)
        event = Event(f"m{i}", "u1", EventType.TRACK, at, name=name)
        state, effects = machine.apply(state, event, at)
        for effect in effects:
            assert isinstance(effect, StageChanged)
            direct.add(effect)
            from_wire.add(parse_stage_change(stage_change(effect, at)))
    assert direct.to_dict() == from_wire.to_dict()
    assert direct.models["saas"].changes >= 2


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"cause": {}}', "missing field"),
        (
            b'{"customer_id": "a", "from_stage": null, "to_stage": "x", "model": "m",'
            b' "model_version": 0, "visit": 1, "cause": {}, "at": "2026-03-01T00:00:00Z"}',
            "model_version",
        ),
        (
            b'{"customer_id": "a", "from_stage": null, "to_stage": "x", "model": "m",'
            b' "model_version": 1, "visit": 1, "cause": {}, "at": "2026-03-01T00:00:00"}',
            "UTC offset",
        ),
    ],
)
def test_bad_stage_change_records_are_named(value: bytes, words: str) -> None:
    with pytest.raises(BadMessage, match=words):
        parse_stage_change(value)
