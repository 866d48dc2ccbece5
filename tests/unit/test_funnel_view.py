"""The funnel's terminal table and HTML page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from engine.funnel_view import bar, duration, percent, render_html, render_text
from engine.journey import StageChanged, load_preset
from engine.journey.funnel import Funnel

SAAS = load_preset("saas")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def move(cid: str, frm: str | None, to: str, model: str = "saas") -> StageChanged:
    return StageChanged(cid, frm, to, T0, model, 1, "r", "m", "e", 1, None if frm is None else 90.0)


def sample() -> dict:  # type: ignore[type-arg]
    f = Funnel([SAAS])
    for i in range(40):
        f.add(move(f"c{i}", None, "discovery"))
    for i in range(25):
        f.add(move(f"c{i}", "discovery", "evaluation"))
    for i in range(5):
        f.add(move(f"c{i}", "evaluation", "at_risk"))
    f.set_stalled("saas", {"evaluation": 3})
    return f.to_dict()


def test_bars_are_proportional_in_eighths_of_a_cell() -> None:
    assert bar(10, 10, 4) == "████"
    assert bar(5, 10, 4) == "██"
    assert bar(1, 16, 4) == "▎"  # two eighths
    assert bar(0, 10, 4) == ""
    assert bar(1, 10**9, 4) == "▏"  # something is never drawn as nothing


def test_durations_and_percentages_read_easily() -> None:
    assert [duration(s) for s in (None, 42, 600, 5400, 3 * 86400)] == [
        "-",
        "42s",
        "10m",
        "1h 30m",
        "3.0d",
    ]
    assert percent(0.1234) == "12.3%"
    assert percent(None) == "-"


def test_text_table_columns_line_up() -> None:
    text = render_text(sample())
    lines = text.splitlines()
    rows = [ln for ln in lines if re.match(r"  (discovery|evaluation|at_risk) ", ln)]
    assert len(rows) == 3
    # Numbers right-aligned under their headers: each row's "reached" ends at the same column.
    header = next(ln for ln in lines if ln.strip().startswith("stage"))
    end = header.index("reached") + len("reached")
    assert all(row[end - 2 : end] in ("40", "25", " 5") for row in rows)
    assert "62.5%" in rows[0]  # discovery: 25 of 40 moved on
    assert "20.0% 5 at_risk" in rows[1]
    assert "· off the path" in text
    assert "discovery → evaluation 62.5%" in text


def test_only_the_models_asked_for() -> None:
    f = Funnel([SAAS])
    f.add(move("a", None, "discovery"))
    f.add(move("b", None, "seen", model="other"))
    doc = f.to_dict()
    assert "other" not in render_text(doc, ["saas"])
    assert "other" in render_text(doc)
    assert render_text({"models": {}}) == "no stage changes\n"


def test_html_page_is_self_contained_and_escapes_text() -> None:
    f = Funnel()
    f.add(move("a", None, "<script>x</script>", model="m&m"))
    page = render_html(f.to_dict(), "topic <t>")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "m&amp;m" in page
    assert "topic &lt;t&gt;" in page
    assert not re.search(r"""(src|href)\s*=""", page)
    assert "@import" not in page
    page = render_html(sample(), "x")
    assert page.count("<svg") >= 2  # the funnel and the time-in-stage sparklines
    assert ">40</text>" in page
    assert "62.5% moved on" in page
    assert "3 stalled" in page
    assert "off the path" in page
