"""Bar charts as inline SVG geometry, computed on the server: no chart library, no script, no inline style."""

from __future__ import annotations

from dataclasses import dataclass

from api.web.formatting import utc_text
from teckochecker.services.insights import ActivitySeries

WIDTH = 600
HEIGHT = 180
PLOT_TOP = 12
PLOT_BOTTOM = 150
PLOT_LEFT = 36


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # "checks" or "triggers": the CSS class that colours it


@dataclass(frozen=True)
class Slot:
    """One time slice: its two bars and the text shown on hover."""

    bars: list[Bar]
    title: str


@dataclass(frozen=True)
class BarChart:
    title: str
    summary: str
    slots: list[Slot]
    maximum: int
    x_labels: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = PLOT_LEFT
    plot_top: int = PLOT_TOP
    plot_bottom: int = PLOT_BOTTOM


def activity_chart(title: str, series: ActivitySeries, label_format: str) -> BarChart:
    """Checks and Keboola triggers side by side per slice; the y axis runs from 0 to the busiest slice."""
    maximum = max([1, *(max(bucket.checks, bucket.triggers) for bucket in series.buckets)])
    slot_width = (WIDTH - PLOT_LEFT) / len(series.buckets)
    bar_width = slot_width * 0.38
    plot_height = PLOT_BOTTOM - PLOT_TOP
    slots = []
    for index, bucket in enumerate(series.buckets):
        left = PLOT_LEFT + index * slot_width + slot_width * 0.1
        bars = []
        for offset, (kind, count) in enumerate((("checks", bucket.checks), ("triggers", bucket.triggers))):
            height = plot_height * count / maximum
            bars.append(Bar(left + offset * bar_width, PLOT_BOTTOM - height, bar_width, height, kind))
        slots.append(
            Slot(
                bars,
                f"{utc_text(bucket.start)} – {bucket.end:%H:%M}: {_count(bucket.checks, 'check')}, "
                f"{_count(bucket.triggers, 'Keboola start')}",
            )
        )
    label_every = max(1, len(series.buckets) // 4)
    x_labels = [
        (PLOT_LEFT + index * slot_width, bucket.start.strftime(label_format))
        for index, bucket in enumerate(series.buckets)
        if index % label_every == 0
    ]
    summary = f"{title}: {series.checks} checks that found a change and {series.triggers} Keboola jobs started."
    return BarChart(title, summary, slots, maximum, x_labels)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
