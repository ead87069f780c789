"""Small PNG charts for the inspect report (histograms, bars, lines), drawn with Pillow.

No plotting library: a chart is a title, two axes with round ticks, and bars or polylines.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 34, 46
COLORS = ["#3b6ea8", "#d9822b", "#4f9a5a", "#b8474d", "#7a5ea8", "#6b6b6b"]
INK, GRID = "#222222", "#e3e3e3"


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(step, 1.0) if integer else step
    first = math.floor(lo / step) * step
    ticks, value = [], first
    while value <= hi + step * 1e-9:
        if value >= lo - step * 1e-9:
            ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


class Chart:
    """A canvas with a plot area mapping data coordinates to pixels."""

    def __init__(self, title: str, x_range: tuple[float, float], y_range: tuple[float, float]):
        self.image = Image.new("RGB", (WIDTH, HEIGHT), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0
        self.draw.text((LEFT, 8), title, fill=INK, font=_font(14))

    def px(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.x0) / (self.x1 - self.x0)
        fy = (y - self.y0) / (self.y1 - self.y0)
        return LEFT + fx * (WIDTH - LEFT - RIGHT), HEIGHT - BOTTOM - fy * (HEIGHT - TOP - BOTTOM)

    def axes(self, xlabel: str, ylabel: str, x_ticks: bool = True, counts: bool = False) -> None:
        font = _font(11)
        for y in nice_ticks(self.y0, self.y1, integer=counts):
            _, py = self.px(self.x0, y)
            self.draw.line([(LEFT, py), (WIDTH - RIGHT, py)], fill=GRID)
            self.draw.text((LEFT - 6, py), _label(y), fill=INK, font=font, anchor="rm")
        if x_ticks:
            for x in nice_ticks(self.x0, self.x1, 6):
                px, _ = self.px(x, self.y0)
                self.draw.text(
                    (px, HEIGHT - BOTTOM + 5), _label(x), fill=INK, font=font, anchor="mt"
                )
        self.draw.line([(LEFT, TOP), (LEFT, HEIGHT - BOTTOM)], fill=INK)
        self.draw.line([(LEFT, HEIGHT - BOTTOM), (WIDTH - RIGHT, HEIGHT - BOTTOM)], fill=INK)
        self.draw.text(
            ((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 6), xlabel, fill=INK, font=font, anchor="md"
        )
        self.draw.text((4, TOP - 14), ylabel, fill=INK, font=font)

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def histogram(edges: Sequence[float], counts: Sequence[int], title: str, xlabel: str) -> bytes:
    """Bars over equal or unequal bins given by their edges (len(edges) == len(counts) + 1)."""
    chart = Chart(title, (edges[0], edges[-1]), (0, max(max(counts, default=0), 1) * 1.08))
    chart.axes(xlabel, "clips", counts=True)
    for lo, hi, count in zip(edges[:-1], edges[1:], counts):
        if count:
            (ax, ay), (bx, by) = chart.px(lo, count), chart.px(hi, 0)
            chart.draw.rectangle([ax + 1, ay, max(ax + 1, bx - 1), by], fill=COLORS[0])
    return chart.png()


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    xlabel: str,
    ylabel: str,
    reference: tuple[str, float] | None = None,
    counts: bool = False,
) -> bytes:
    """One labelled bar per value; an optional dashed reference line (e.g. chance)."""
    top = max([*values, reference[1] if reference else 0.0, 1e-9]) * 1.1
    chart = Chart(title, (0, len(values)), (0, top))
    chart.axes(xlabel, ylabel, x_ticks=False, counts=counts)
    font = _font(10)
    step = max(1, math.ceil(len(labels) / 16))  # at most ~16 labels under the bars
    for i, (label, value) in enumerate(zip(labels, values)):
        (ax, ay), (bx, by) = chart.px(i + 0.12, value), chart.px(i + 0.88, 0)
        chart.draw.rectangle([ax, ay, max(ax + 1, bx), by], fill=COLORS[0])
        if i % step == 0:
            chart.draw.text(((ax + bx) / 2, by + 5), label[:10], fill=INK, font=font, anchor="mt")
    if reference:
        name, level = reference
        _, py = chart.px(0, level)
        for x in range(LEFT, WIDTH - RIGHT, 10):
            chart.draw.line([(x, py), (x + 5, py)], fill=COLORS[3], width=2)
        box = chart.draw.textbbox((WIDTH - RIGHT - 4, py - 3), name, font=font, anchor="rb")
        chart.draw.rectangle([box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1], fill="white")
        chart.draw.text((WIDTH - RIGHT - 4, py - 3), name, fill=COLORS[3], font=font, anchor="rb")
    return chart.png()


def lines(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
) -> bytes:
    """Polylines, one per named series, with a legend."""
    xs = [x for xs_, _ in series.values() for x in xs_]
    ys = [y for _, ys_ in series.values() for y in ys_ if math.isfinite(y)]
    lo = min(ys, default=0.0)
    chart = Chart(
        title, (min(xs, default=0), max(xs, default=1)), (min(0.0, lo), max(ys, default=1) * 1.05)
    )
    chart.axes(xlabel, ylabel)
    font = _font(11)
    for i, (name, (x_values, y_values)) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        points = [chart.px(x, y) for x, y in zip(x_values, y_values) if math.isfinite(y)]
        if len(points) > 1:
            chart.draw.line(points, fill=color, width=2)
        elif points:
            x, y = points[0]
            chart.draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
        x, y = WIDTH - RIGHT - 120, TOP + 4 + 15 * i
        chart.draw.line([(x, y + 7), (x + 14, y + 7)], fill=color, width=2)
        chart.draw.text((x + 20, y), name, fill=color, font=font)
    return chart.png()
