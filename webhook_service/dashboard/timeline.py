"""A recording's timeline drawn as inline SVG: sessions as bars over time, and marks for the API calls,
Agora calls (coloured by their answer), state changes and callbacks. Every text is escaped (markupsafe)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

WIDTH = 1000
LEFT = 110  # room for the lane labels
RIGHT = 20
LANE = 26
LANES = ("api", "agora", "transition", "callback", "other")
LANE_LABELS = {
    "api": "API calls",
    "agora": "Agora calls",
    "transition": "state changes",
    "callback": "callbacks",
    "other": "decisions etc.",
}
COLOURS = {
    "api": "#3b6fd8",
    "agora": "#2a9d8f",
    "agora-error": "#d62828",
    "transition": "#7b2cbf",
    "callback": "#f4a261",
    "other": "#8d99ae",
}


def _clock(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def _lane(entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind")
    return kind if isinstance(kind, str) and kind in LANES else "other"


def _when(event: Mapping[str, Any]) -> float | None:
    """Where an event is drawn: callbacks at Agora's ``sendts`` when it is within a day of their arrival (the
    list below is ordered by arrival), everything else at its own time."""
    ts = event.get("ts")
    if not isinstance(ts, int | float):
        return None
    raw = event.get("raw") or {}
    sent = raw.get("sendts") if event.get("kind") == "callback" else None
    if isinstance(sent, int) and abs(sent - ts) < 86_400_000:
        return float(sent)
    return float(ts)


def draw(
    sessions: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]], start_ms: int, end_ms: int
) -> Markup:
    """The SVG (``sessions`` as the API shows them; ``events`` as :func:`views.events_of` makes them)."""
    times = [float(start_ms), float(end_ms)]
    times += [t for e in events if (t := _when(e)) is not None]
    for s in sessions:
        times += [float(s[k]) for k in ("acquiredMs", "endedMs") if isinstance(s.get(k), int | float)]
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 1000.0)
    inner = WIDTH - LEFT - RIGHT

    def x(ms: float) -> float:
        return round(LEFT + (ms - t0) / span * inner, 1)

    rows = len(sessions)
    height = 30 + (rows + len(LANES)) * LANE + 20
    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of the recording">'
    ]
    # time axis
    for i in range(6):
        ms = t0 + span * i / 5
        px = x(ms)
        out.append(f'<line x1="{px}" y1="20" x2="{px}" y2="{height - 10}" stroke="#ddd"/>')
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        out.append(
            f'<text x="{px}" y="14" font-size="11" text-anchor="{anchor}" fill="#555">{_clock(ms)}</text>'
        )
    y = 30
    for index, s in enumerate(sessions):
        begin = s.get("startedMs") or s.get("acquiredMs") or t0
        end = s.get("endedMs") or end_ms
        outcome = s.get("outcome") or "live"
        label = f"session {index + 1}: sid {s.get('sid') or '?'}, uid {s.get('uid')}, {outcome}"
        colour = "#52b788" if outcome in ("live", "running", "stopped", "exited") else "#e9c46a"
        out.append(f'<text x="4" y="{y + 16}" font-size="11" fill="#333">session {index + 1}</text>')
        width = max(x(float(end)) - x(float(begin)), 2.0)
        out.append(
            f'<rect class="session-bar" x="{x(float(begin))}" y="{y + 4}" width="{round(width, 1)}" height="{LANE - 8}" '
            f'rx="3" fill="{colour}"><title>{escape(label)}</title></rect>'
        )
        y += LANE
    lane_y = {}
    for lane in LANES:
        lane_y[lane] = y
        out.append(f'<text x="4" y="{y + 16}" font-size="11" fill="#333">{LANE_LABELS[lane]}</text>')
        out.append(
            f'<line x1="{LEFT}" y1="{y + LANE / 2}" x2="{WIDTH - RIGHT}" y2="{y + LANE / 2}" stroke="#eee"/>'
        )
        y += LANE
    for event in events:
        ts = _when(event)
        if ts is None:
            continue
        lane = _lane(event)
        colour = COLOURS[lane]
        raw = event.get("raw") or {}
        if lane == "agora" and (raw.get("outcome") not in (None, "ok")):
            colour = COLOURS["agora-error"]
        cy = lane_y[lane] + LANE / 2
        title = escape(f"{event.get('at')} {event.get('summary')}")
        if lane == "transition":
            out.append(
                f'<line x1="{x(ts)}" y1="30" x2="{x(ts)}" y2="{y}" stroke="{colour}" stroke-dasharray="3,3" '
                'stroke-width="1"/>'
            )
            out.append(
                f'<rect class="mark mark-transition" x="{x(ts) - 5}" y="{cy - 5}" width="10" height="10" '
                f'fill="{colour}" transform="rotate(45 {x(ts)} {cy})"><title>{title}</title></rect>'
            )
        else:
            out.append(
                f'<circle class="mark mark-{lane}" cx="{x(ts)}" cy="{cy}" r="5" fill="{colour}" '
                f'stroke="#fff" stroke-width="1"><title>{title}</title></circle>'
            )
    out.append("</svg>")
    return Markup("".join(out))
