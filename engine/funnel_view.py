"""The funnel for people: an aligned terminal table with bars, and a self-contained
HTML page with an SVG funnel chart. Both draw from the JSON form of
:meth:`engine.journey.funnel.Funnel.to_dict`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

_EIGHTHS = " ▏▎▍▌▋▊▉█"
NONE = "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{hours:.0f}h {rest / 60:02.0f}m"
    return f"{seconds / 86400:.1f}d"


def percent(ratio: float | None) -> str:
    return NONE if ratio is None else f"{100 * ratio:.1f}%"


def bar(value: float, top: float, width: int) -> str:
    """A bar of ``width`` cells for ``value`` out of ``top``, in eighths of a cell."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(8 * width * value / top))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _drop(stage: Mapping[str, Any]) -> str:
    drops: Mapping[str, int] = stage["drop_off"]
    if not drops:
        return NONE
    return f"{percent(stage['drop_off_rate'])} " + ", ".join(f"{n} {to}" for to, n in drops.items())


def render_text(
    doc: Mapping[str, Any], models: Sequence[str] | None = None, width: int = 30
) -> str:
    """The funnel of each model as an aligned table."""
    out: list[str] = []
    for name, m in doc["models"].items():
        if models and name not in models:
            continue
        versions = ", ".join(str(v) for v in m["versions"]) or "?"
        out.append(f"{name} (version {versions}): {m['changes']:,} stage changes, {m['late']} late")
        stages = m["stages"]
        top = max((s["reached"] for s in stages), default=0)
        header = (
            f"  {'stage':<22} {'reached':>9}  {'':<{width}}  {'in stage':>8}  "
            f"{'moved on':>8}  {'stalled':>7}  {'median time':>11}  drop-off"
        )
        out += [header, "  " + "─" * (len(header) - 2)]
        off_path_started = False
        for s in stages:
            if not s["on_path"] and m["path"] and not off_path_started:
                out.append(f"  {'· off the path':<22}")
                off_path_started = True
            out.append(
                f"  {s['stage']:<22} {s['reached']:>9,}  {bar(s['reached'], top, width):<{width}}  "
                f"{s['in_stage']:>8,}  {percent(s['conversion']):>8}  {s['stalled']:>7,}  "
                f"{duration(s['time_in_stage']['p50_s']):>11}  {_drop(s)}"
            )
        if m["steps"]:
            out.append("  steps: " + "   ".join(
                f"{st['from']} → {st['to']} {percent(st['conversion'])}" for st in m["steps"]
            ))  # fmt: skip
        out.append("")
    if not out:
        return "no stage changes\n"
    return "\n".join(out)


# ---------------------------------------------------------------------- HTML

_CSS = """
:root { --ink:#1d2433; --muted:#667085; --line:#e4e7ec; --bg:#f6f7fb; --card:#fff;
        --drop:#d92d20; --ok:#12b76a; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
main { max-width:1080px; margin:0 auto; padding:32px 24px 64px; }
h1 { font-size:26px; margin:0 0 4px; } h2 { font-size:20px; margin:0 0 16px; }
.sub { color:var(--muted); margin:0 0 24px; }
section { background:var(--card); border:1px solid var(--line); border-radius:14px;
          padding:24px; margin:0 0 28px; box-shadow:0 1px 2px rgba(16,24,40,.05); }
.tiles { display:grid; grid-template-columns:repeat(auto-fit,minmax(180px,1fr)); gap:12px;
         margin:0 0 20px; }
.tile { border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.tile b { display:block; font-size:24px; } .tile span { color:var(--muted); font-size:13px; }
svg text { font-family:inherit; }
table { border-collapse:collapse; width:100%; font-size:14px; margin-top:8px; }
th, td { text-align:right; padding:6px 8px; border-bottom:1px solid var(--line); }
th:first-child, td:first-child { text-align:left; }
th { color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; }
.drop { color:var(--drop); } .muted { color:var(--muted); }
"""

_COLORS = ["#3e63dd", "#4a6fe0", "#5b7ce3", "#6a5ae0", "#7c4ddb", "#8e44d0", "#a23bc2", "#b5339f"]


def _funnel_svg(m: Mapping[str, Any]) -> str:
    by_name = {s["stage"]: s for s in m["stages"]}
    path = [by_name[p] for p in m["path"] if p in by_name] or [
        s for s in m["stages"] if s["reached"]
    ]
    if not path:
        return '<p class="muted">No stage changes for this model yet.</p>'
    top = max(s["reached"] for s in path) or 1
    row, gap, full, cx, left = 50, 34, 460.0, 420.0, 170.0
    height = len(path) * (row + gap) - gap + 20
    parts: list[str] = []
    widths = [max(6.0, full * s["reached"] / top) for s in path]
    for i, s in enumerate(path):
        y = 10 + i * (row + gap)
        w = widths[i]
        color = _COLORS[min(i, len(_COLORS) - 1)]
        if i + 1 < len(path):  # the flow into the next stage
            w2 = widths[i + 1]
            parts.append(
                f'<polygon points="{cx - w / 2:.1f},{y + row} {cx + w / 2:.1f},{y + row} '
                f'{cx + w2 / 2:.1f},{y + row + gap} {cx - w2 / 2:.1f},{y + row + gap}" '
                f'fill="{color}" opacity=".16"/>'
            )
            step = next((st for st in m["steps"] if st["from"] == s["stage"]), None)
            conv = percent(step["conversion"] if step else s["conversion"])
            parts.append(
                f'<text x="{cx}" y="{y + row + gap / 2 + 5:.1f}" text-anchor="middle" '
                f'font-size="13" fill="#344054">▼ {escape(conv)} moved on</text>'
            )
        parts.append(
            f'<rect x="{cx - w / 2:.1f}" y="{y}" width="{w:.1f}" height="{row}" rx="8" '
            f'fill="{color}"><title>{escape(s["stage"])}: {s["reached"]:,} reached</title></rect>'
        )
        label_fill = "#fff" if w > 90 else "#1d2433"
        label_x = cx if w > 90 else cx + w / 2 + 8
        anchor = "middle" if w > 90 else "start"
        parts.append(
            f'<text x="{label_x:.1f}" y="{y + row / 2 + 6}" text-anchor="{anchor}" '
            f'font-size="17" font-weight="700" fill="{label_fill}">{s["reached"]:,}</text>'
        )
        parts.append(
            f'<text x="{left}" y="{y + row / 2 - 2}" text-anchor="end" font-size="15" '
            f'font-weight="600" fill="#1d2433">{escape(s["stage"])}</text>'
            f'<text x="{left}" y="{y + row / 2 + 16}" text-anchor="end" font-size="12" '
            f'fill="#667085">{s["in_stage"]:,} now · median {duration(s["time_in_stage"]["p50_s"])}'
            f"</text>"
        )
        drops = s["drop_off"]
        if drops or s["stalled"]:
            dx, mid = cx + full / 2 + 30, y + row / 2
            lines = []
            if drops:
                lines.append(("#d92d20", f"drop-off {percent(s['drop_off_rate'])}"))
                lines.append(("#667085", ", ".join(f"{n:,} → {to}" for to, n in drops.items())))
            if s["stalled"]:
                lines.append(("#b54708", f"{s['stalled']:,} stalled"))
            color = "#d92d20" if drops else "#b54708"
            parts.append(
                f'<path d="M{cx + w / 2 + 6:.1f},{mid} L{dx - 6:.1f},{mid}" stroke="{color}" '
                f'stroke-width="1.5" stroke-dasharray="4 3" fill="none"/>'
            )
            first = mid + 5 - 8 * (len(lines) - 1)
            for k, (fill, text) in enumerate(lines):
                parts.append(
                    f'<text x="{dx}" y="{first + 16 * k:.1f}" font-size="13" fill="{fill}">'
                    f"{escape(text)}</text>"
                )
    off = [s for s in m["stages"] if not s["on_path"] and s["reached"]] if m["path"] else []
    if off:
        y = 10 + len(path) * (row + gap)
        parts.append(
            f'<text x="{left}" y="{y + 24}" text-anchor="end" font-size="15" font-weight="600" '
            f'fill="#d92d20">off the path</text>'
        )
        x = cx - full / 2
        for s in off:
            label = f"{s['stage']}  {s['reached']:,} reached · {s['in_stage']:,} now"
            bw = 24 + 6.7 * len(label)
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{bw:.1f}" height="36" rx="8" fill="#fef3f2" '
                f'stroke="#fda29b"/><text x="{x + 12:.1f}" y="{y + 23}" font-size="13" '
                f'fill="#b42318">{escape(label)}</text>'
            )
            x += bw + 12
        height += 36 + gap
    head = (
        f'<svg viewBox="0 0 1000 {height}" width="100%" role="img" '
        f'aria-label="Funnel of {escape(m["model"])}">'
    )
    return head + "".join(parts) + "</svg>"


def _spark(counts: Sequence[int]) -> str:
    top = max(counts) or 1
    bars = "".join(
        f'<rect x="{i * 9}" y="{24 - 22 * n / top:.1f}" width="7" height="{22 * n / top:.1f}" '
        f'rx="1.5" fill="#6a5ae0"/>'
        for i, n in enumerate(counts)
    )
    w = len(counts) * 9
    return f'<svg width="{w}" height="24" viewBox="0 0 {w} 24">{bars}</svg>'


def _tiles(m: Mapping[str, Any]) -> str:
    by_name = {s["stage"]: s for s in m["stages"]}
    path = [by_name[p] for p in m["path"] if p in by_name]
    tiles = [(f"{m['changes']:,}", "stage changes")]
    if path:
        first, last = path[0]["reached"], path[-1]["reached"]
        tiles.append((f"{first:,}", f"reached {path[0]['stage']}"))
        tiles.append((f"{last:,}", f"reached {path[-1]['stage']}"))
        steps = [st for st in m["steps"] if st["conversion"] is not None]
        if steps:
            worst = min(steps, key=lambda st: st["conversion"])
            tiles.append(
                (percent(worst["conversion"]), f"weakest step: {worst['from']} → {worst['to']}")
            )
    dropped = sum(sum(s["drop_off"].values()) for s in m["stages"])
    tiles.append((f"{dropped:,}", "moves off the path"))
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in tiles
    ) + "</div>"  # fmt: skip


def _table(m: Mapping[str, Any]) -> str:
    rows = []
    for s in m["stages"]:
        t = s["time_in_stage"]
        off = "" if s["on_path"] else " <span class=muted>(off path)</span>"
        rows.append(
            f"<tr><td>{escape(s['stage'])}{off}</td>"
            f"<td>{s['reached']:,}</td><td>{s['entries']:,}</td><td>{s['in_stage']:,}</td>"
            f"<td>{percent(s['conversion'])}</td><td class=drop>{escape(_drop(s))}</td>"
            f"<td>{s['stalled']:,}</td><td>{duration(t['p50_s'])}</td><td>{duration(t['p90_s'])}</td>"
            f"<td>{_spark(t['counts'])}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("stage", "reached", "entries", "in stage", "moved on", "drop-off", "stalled",
                  "median time", "p90 time", "time in stage")
    )  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(doc: Mapping[str, Any], source: str, models: Sequence[str] | None = None) -> str:
    """A self-contained page (inline CSS and SVG, no external assets)."""
    sections = []
    for name, m in doc["models"].items():
        if models and name not in models:
            continue
        versions = ", ".join(str(v) for v in m["versions"])
        sections.append(
            f"<section><h2>{escape(name)} <span class=muted>version {escape(versions)}</span></h2>"
            f"{_tiles(m)}{_funnel_svg(m)}{_table(m)}</section>"
        )
    body = "".join(sections) or '<section><p class="muted">No stage changes.</p></section>'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Customer journey funnel</title><style>{_CSS}</style></head><body><main>"
        "<h1>Customer journey funnel</h1>"
        f'<p class="sub">From {escape(source)}. Bars: customers who reached each stage; '
        "between them, the share of entries that moved on along the path; in red, moves "
        "off the path and stalled customers.</p>"
        f"{body}</main></body></html>\n"
    )
