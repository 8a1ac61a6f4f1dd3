"""Layout of a scenario's sequence diagram: one lifeline per party, one arrow per event in time order.

Pure geometry: ``layout(events)`` turns the ``events`` of a scenario into coordinates and short
labels, and the HTML template draws them as inline SVG (lines and polygons only: no markers, no
ids, so any number of diagrams can share one page). Texts stay plain strings here; the template
escapes them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import quote

#: Parties in the order a reader expects them, left to right; others follow in order of appearance.
PARTY_ORDER: tuple[str, ...] = ("user", "target-access", "target-incoming", "target-delivery", "target", "counterpart")

LEFT = 74  # room for the time labels
COLUMN = 196  # distance between lifelines
TOP = 46  # party boxes
ROW = 50  # one event
BOTTOM = 18
HEAD = 9  # arrowhead length
CHAR_PX = 6.4  # average width of a character of the 11 px label font
LOOP = 36  # width of a self-message loop


def evidence_href(path: str | None) -> str | None:
    """A relative href for an evidence path (percent-encoded: never a scheme, never a query)."""
    if not path:
        return None
    return quote(path, safe="/")


def format_offset(seconds: float) -> str:
    """``+1.2 s``, ``+12 m 05 s`` or ``+12 h 00 m``: time since the scenario started."""
    if seconds < 60:
        return f"+{seconds:.1f} s"
    total = int(round(seconds))
    if total < 3600:
        return f"+{total // 60} m {total % 60:02d} s"
    return f"+{total // 3600} h {total % 3600 // 60:02d} m"


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    limit = max(limit, 4)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def order_parties(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Distinct parties of the events: known ones in ``PARTY_ORDER``, then the rest as they appear."""
    seen: list[str] = []
    for event in events:
        for party in (event["from"], event["to"]):
            if party not in seen:
                seen.append(party)
    known = [p for p in PARTY_ORDER if p in seen]
    return known + [p for p in seen if p not in PARTY_ORDER]


def layout(events: Iterable[Mapping[str, Any]], bad_evidence: Collection[str] = ()) -> dict:
    """Coordinates of the diagram of ``events`` (sorted by ``at``, stable).

    ``bad_evidence``: evidence paths cited by a FAIL/ERROR/XPASS finding; their arrows are drawn
    as problems. Returns ``{"width", "height", "parties": [...], "arrows": [...]}``; an empty
    event list gives no parties and no arrows.
    """
    ordered = sorted(events, key=lambda e: e["at"])
    parties = order_parties(ordered)
    x_of = {p: LEFT + COLUMN // 2 + i * COLUMN for i, p in enumerate(parties)}
    height = TOP + ROW * len(ordered) + BOTTOM + 12
    width = LEFT + COLUMN * max(len(parties), 1) + 8
    out_parties = [
        {"name": p, "label": shorten(p, 24), "x": x, "box_x": x - 80, "box_w": 160,
         "y1": TOP, "y2": height - BOTTOM}
        for p, x in x_of.items()
    ]
    arrows = []
    for i, event in enumerate(ordered):
        y = TOP + 30 + i * ROW
        x1, x2 = x_of[event["from"]], x_of[event["to"]]
        kind = event.get("kind")
        when = format_offset(event["at"])
        detail = " \u00b7 ".join(part for part in (kind, when) if part)
        title_lines = [f"{event['from']} \u2192 {event['to']}: {event['label']}"]
        if kind:
            title_lines.append(f"kind: {kind}")
        title_lines.append(f"at {when}")
        if event.get("message_id"):
            title_lines.append(f"Message-ID: {event['message_id']}")
        if event.get("evidence"):
            title_lines.append(f"evidence: {event['evidence'].rsplit('/', 1)[-1]}")  # the folder is the scenario's
        arrow: dict[str, Any] = {
            "y": y,
            "time": when,
            "time_x": 6,
            "title": "\n".join(title_lines),
            "href": evidence_href(event.get("evidence")),
            "problem": bool(event.get("evidence")) and event.get("evidence") in bad_evidence,
            "self": x1 == x2,
        }
        if x1 == x2:
            # A loop to the right of the lifeline, its label beside it.
            arrow.update(
                path=f"M{x1},{y - 7} H{x1 + LOOP} V{y + 7} H{x1 + HEAD}",
                head=_head(x1, y + 7, -1),
                label_x=x1 + LOOP + 6, label_y=y - 2, detail_y=y + 12, anchor="start",
                label=shorten(event["label"], int((COLUMN - LOOP - 16) / CHAR_PX)),
                detail=shorten(detail, int((COLUMN - LOOP - 16) / CHAR_PX)),
            )
        else:
            direction = 1 if x2 > x1 else -1
            chars = int((abs(x2 - x1) - 12) / CHAR_PX)
            arrow.update(
                path=f"M{x1},{y} H{x2 - direction * HEAD}",
                head=_head(x2, y, direction),
                label_x=(x1 + x2) / 2, label_y=y - 7, detail_y=y + 15, anchor="middle",
                label=shorten(event["label"], chars),
                detail=shorten(detail, chars),
            )
        arrows.append(arrow)
    return {"width": width, "height": height, "parties": out_parties, "arrows": arrows}


def _head(x: float, y: float, direction: int) -> str:
    """Points of an arrowhead with its tip at (x, y), pointing right (1) or left (-1)."""
    back = x - direction * HEAD
    return f"{x},{y} {back},{y - 4.5} {back},{y + 4.5}"
