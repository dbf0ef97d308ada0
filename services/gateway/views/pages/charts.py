"""Bar charts drawn on the server as SVG, so they show without JavaScript: the geometry here,
the markup in ``templates/pages/_chart.html``. Each chart also renders as a table of the same
figures for screen readers and for copying."""
from __future__ import annotations

from dataclasses import dataclass

from services.common.money import Money

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 84, 12, 12, 40
MAX_BARS = 24


@dataclass(frozen=True)
class Bar:
    label: str
    cents: int
    x: float
    y: float
    width: float
    height: float
    text: str


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (y, label) of the horizontal guide lines
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: float = HEIGHT - BOTTOM

    @property
    def summary(self) -> str:
        if not self.bars:
            return f"{self.title}: nothing yet"
        return f"{self.title}: " + ", ".join(f"{b.label} {b.text}" for b in self.bars)


def nice_step(maximum: int, steps: int = 4) -> int:
    """A round step (1, 2 or 5 times a power of ten cents) that covers ``maximum`` in about ``steps``."""
    if maximum <= 0:
        return 100
    raw = maximum / steps
    power = 1
    while power * 10 <= raw:
        power *= 10
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def bar_chart(title: str, points: list[tuple[str, int]], currency: str = "EUR") -> Chart:
    """``points``: (label, cents), oldest first; the last ``MAX_BARS`` are drawn."""
    points = points[-MAX_BARS:]
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = max([c for _, c in points] + [0])
    step = nice_step(top_value)
    scale_max = max(step * -(-top_value // step), step)
    ticks = [(TOP + plot_height - plot_height * v / scale_max, str(Money(v, currency))) for v in range(0, scale_max + 1, step)]
    bars = []
    if points:
        slot = plot_width / len(points)
        width = min(slot * 0.7, 60)
        for i, (label, cents) in enumerate(points):
            height = plot_height * max(cents, 0) / scale_max
            bars.append(Bar(label, cents, LEFT + i * slot + (slot - width) / 2, TOP + plot_height - height, width, height,
                            str(Money(cents, currency))))
    return Chart(title, bars, ticks)
