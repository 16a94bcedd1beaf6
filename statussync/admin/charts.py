"""Charts as SVG drawn on the server: no JavaScript, no library, nothing from a CDN, readable in a screenshot.

One chart so far: stacked bars per hour with a line on top (the dashboard's decisions by outcome, and the
events received). Every number is also in each bar's tooltip (`<title>`) and, for screen readers and
copying, in a table beside the chart (the dashboard template).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 32


@dataclass(frozen=True)
class Series:
    """One stacked part of every bar, or the line."""

    key: str
    label: str
    color: str
    values: Sequence[int]


def axis_scale(peak: float, *, ticks: int = 5) -> tuple[int, int]:
    """The axis' top and step for values up to `peak`: a round step (1, 2 or 5 times a power of ten) and at
    most `ticks` steps, so every label is a whole, round number."""
    rough = max(peak, 1) / ticks
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    step = max(int(step), 1)
    return max(math.ceil(peak / step), 1) * step, step


def stacked_bars_svg(
    *,
    labels: Sequence[str],
    bars: Sequence[Series],
    line: Series | None = None,
    title: str,
    every: int = 3,
) -> SafeString:
    """Bars of `bars` stacked per slot (one slot per label), and `line` drawn over them; every `every`-th
    label on the x axis. All text is escaped."""
    slots = len(labels)
    totals = [sum(series.values[i] for series in bars) for i in range(slots)]
    peak = max([*totals, *(line.values if line else []), 0])
    top, step = axis_scale(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot_w = plot_w / max(slots, 1)
    bar_w = max(slot_w * 0.7, 1)

    def y(value: float) -> float:
        return TOP + plot_h - value / top * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="bx-svg-chart" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
    ]
    for value in range(0, top + 1, step):  # grid lines and the y axis
        gy = y(value)
        label = str(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#8884" '
            f'stroke-width="1"/><text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" fill="#888">'
            f"{escape(label)}</text>"
        )
    for i, label in enumerate(labels):
        x = LEFT + i * slot_w + (slot_w - bar_w) / 2
        base = 0
        for series in bars:
            value = series.values[i]
            if not value:
                continue
            top_y, bottom_y = y(base + value), y(base)
            parts.append(
                f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{bar_w:.1f}" height="{bottom_y - top_y:.1f}" '
                f'fill="{escape(series.color)}" data-series="{escape(series.key)}">'
                f"<title>{escape(label)} · {escape(series.label)}: {value}</title></rect>"
            )
            base += value
        if i % every == 0:
            parts.append(
                f'<text x="{LEFT + (i + 0.5) * slot_w:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" '
                f'fill="#888">{escape(label)}</text>'
            )
    if line is not None and slots:
        points = [(LEFT + (i + 0.5) * slot_w, y(v)) for i, v in enumerate(line.values)]
        path = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py) in enumerate(points))
        parts.append(
            f'<path d="{path}" fill="none" stroke="{escape(line.color)}" stroke-width="2" '
            f'data-series="{escape(line.key)}"/>'
        )
        for (px, py), label, value in zip(points, labels, line.values, strict=True):
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{escape(line.color)}">'
                f"<title>{escape(label)} · {escape(line.label)}: {value}</title></circle>"
            )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#888" '
        'stroke-width="1"/>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()
