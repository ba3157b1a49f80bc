"""Minimal charts with Pillow (no matplotlib among the project's dependencies): lines, scatters and bars, log or linear axes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lightlabel.utils.files import atomic_path

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    step = 10 ** math.floor(math.log10((hi - lo) or 1))
    if (hi - lo) / step < 4:
        step /= 2
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 2)]


def _fmt(v: float, unit: str) -> str:
    if unit == "bytes":
        for suffix, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if v >= scale:
                return f"{v / scale:g} {suffix}"
        return f"{v:g} B"
    return f"{v:g}"


def _mapper(x0: float, x1: float, y0: float, y1: float, box: tuple[float, float, float, float], *,
            logx: bool = False, logy: bool = False):
    """Data -> pixel coordinates inside ``box = (left, top, right, bottom)``, each axis linear or log10."""
    tx = math.log10 if logx else (lambda v: v)
    ty = math.log10 if logy else (lambda v: v)
    left, top, right, bottom = box

    def px(x: float, y: float) -> tuple[float, float]:
        fx = (tx(x) - tx(x0)) / ((tx(x1) - tx(x0)) or 1)
        fy = (ty(y) - ty(y0)) / ((ty(y1) - ty(y0)) or 1)
        return left + fx * (right - left), bottom - fy * (bottom - top)

    return px


def _save(img: Image.Image, path: str | Path) -> Path:
    """Write ``img`` as PNG atomically (a reader never sees half a file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def line_chart(path: str | Path, series: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str,
               xlabel: str, ylabel: str, logx: bool = False, logy: bool = False, yunit: str = "",
               size: tuple[int, int] = (900, 560), dashed: Sequence[str] = ()) -> Path:
    """Draw ``{name: (xs, ys)}`` as lines with markers and a legend; written atomically as PNG."""
    w, h = size
    left, right, top, bottom = 110, 30, 50, 70
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs = [x for xs_, _ in series.values() for x in xs_]
    ys = [y for _, ys_ in series.values() for y in ys_]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if logy:
        y0, y1 = 10 ** math.floor(math.log10(y0)), 10 ** math.ceil(math.log10(y1))
    px = _mapper(x0, x1, y0, y1, (left, top, w - right, h - bottom), logx=logx, logy=logy)

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for v in _ticks(y0, y1, logy):
        if y0 <= v <= y1:
            _, y = px(x0, v)
            d.line([left, y, w - right, y], fill=(225, 225, 225))
            d.text((8, y - 6), _fmt(v, yunit), fill="black", font=font)
    for v in sorted(set(xs)):
        x, _ = px(v, y0)
        d.line([x, h - bottom, x, h - bottom + 5], fill="black")
        d.text((x - 12, h - bottom + 8), f"{v:g}", fill="black", font=font)
    d.text((w // 2 - 6 * len(title) // 2, 15), title, fill="black", font=font)
    d.text((w // 2 - 3 * len(xlabel), h - 30), xlabel, fill="black", font=font)
    d.text((8, top - 30), ylabel, fill="black", font=font)
    for i, (name, (sx, sy)) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        points = [px(x, y) for x, y in zip(sx, sy)]
        if name in dashed:
            for a, b in zip(points, points[1:]):
                for t in range(0, 20, 2):
                    p = (a[0] + (b[0] - a[0]) * t / 20, a[1] + (b[1] - a[1]) * t / 20)
                    q = (a[0] + (b[0] - a[0]) * (t + 1) / 20, a[1] + (b[1] - a[1]) * (t + 1) / 20)
                    d.line([p, q], fill=color, width=2)
        else:
            d.line(points, fill=color, width=3)
        for x, y in points:
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
        d.rectangle([left + 15, top + 12 + 18 * i, left + 35, top + 22 + 18 * i], fill=color)
        d.text((left + 42, top + 10 + 18 * i), name, fill="black", font=font)
    return _save(img, path)


# 12 distinguishable colours (Tableau's 10 plus two darker ones): a scatter numbers its points as well
SCATTER_COLORS = COLORS + [(227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (31, 60, 120),
                           (120, 20, 20)]


def scatter_chart(path: str | Path, points: Sequence[tuple[str, float, float]], *, title: str, xlabel: str,
                  ylabel: str, logx: bool = False, xunit: str = "", width: int = 900) -> Path:
    """One numbered marker per ``(name, x, y)``; the legend (number, name, y) sits below the plot, not on it.

    Markers that would share a spot keep their own numbers: a label that would overlap an earlier one moves down.
    X ticks are powers of ten on a log axis (formatted with ``xunit``, e.g. ``"bytes"``); the y range is padded so
    no marker sits on the frame. Written atomically as PNG; the height grows with the number of points.
    """
    row, left, right, top, plot_h = 16, 70, 40, 50, 380
    legend_top = top + plot_h + 60
    h = legend_top + row * len(points) + 20
    img = Image.new("RGB", (width, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs = [x for _, x, _ in points]
    ys = [y for _, _, y in points]
    pad = max((max(ys) - min(ys)) * 0.08, 0.5)
    y0, y1 = min(ys) - pad, max(ys) + pad
    if logx:
        x0, x1 = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
    else:
        xpad = (max(xs) - min(xs)) * 0.05 or 1
        x0, x1 = min(xs) - xpad, max(xs) + xpad
    px = _mapper(x0, x1, y0, y1, (left, top, width - right, top + plot_h), logx=logx)

    for v in _ticks(y0, y1, False):
        if y0 <= v <= y1:
            _, y = px(x0, v)
            d.line([left, y, width - right, y], fill=(225, 225, 225))
            d.text((8, y - 6), f"{v:g}", fill="black", font=font)
    for v in _ticks(x0, x1, logx):
        if x0 <= v <= x1:
            x, _ = px(v, y0)
            d.line([x, top, x, top + plot_h], fill=(235, 235, 235))
            label = _fmt(v, xunit)
            d.text((x - 3 * len(label), top + plot_h + 8), label, fill="black", font=font)
    d.rectangle([left, top, width - right, top + plot_h], outline="black")
    d.text((width // 2 - 3 * len(title), 15), title, fill="black", font=font)
    d.text((width // 2 - 3 * len(xlabel), top + plot_h + 30), xlabel, fill="black", font=font)
    d.text((8, top - 30), ylabel, fill="black", font=font)
    centres = [px(x, y) for _, x, y in points]
    placed = [(cx - 5, cy - 5, cx + 5, cy + 5) for cx, cy in centres]  # labels avoid every marker and each other
    for i, (name, _x, y) in enumerate(points):
        color = SCATTER_COLORS[i % len(SCATTER_COLORS)]
        cx, cy = centres[i]
        d.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=color, outline="black")
        tag = str(i + 1)
        lx, ly = cx + 8, cy - 6
        for _ in range(20):  # at most 20 rows down; then it stays where it is
            if not any(lx < b[2] and lx + 7 * len(tag) > b[0] and ly < b[3] and ly + 11 > b[1] for b in placed):
                break
            ly += 11
        placed.append((lx, ly, lx + 7 * len(tag), ly + 11))
        d.text((lx, ly), tag, fill=color if sum(color) < 500 else "black", font=font)
        yl = legend_top + row * i
        d.ellipse([left, yl + 2, left + 10, yl + 12], fill=color, outline="black")
        d.text((left + 18, yl), f"{tag}. {name}: {y:.1f}", fill="black", font=font)
    return _save(img, path)


def bar_chart(path: str | Path, bars: Sequence[tuple[str, float, float, str]], *, title: str, xlabel: str,
              size: tuple[int, int] = (900, 0)) -> Path:
    """Horizontal bars ``(name, value, error, note)`` with +- error whiskers and a note after each; atomic PNG.

    ``error`` may be ``nan`` (no whisker, e.g. a single seed). The height grows with the number of bars.
    """
    row, left, right, top, bottom = 34, 360, 220, 50, 50
    w = size[0]
    h = size[1] or top + bottom + row * len(bars)
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    hi = max(v + (e if e == e else 0) for _, v, e, _ in bars)
    ticks = _ticks(0, hi, False)
    x_max = ticks[-1]  # _ticks runs past hi

    def px(v: float) -> float:
        return left + v / (x_max or 1) * (w - left - right)

    for t in ticks:
        if t <= x_max:
            d.line([px(t), top, px(t), h - bottom], fill=(225, 225, 225))
            d.text((px(t) - 8, h - bottom + 8), f"{t:g}", fill="black", font=font)
    for i, (name, v, e, note) in enumerate(bars):
        y = top + row * i + 6
        color = COLORS[i % len(COLORS)]
        d.rectangle([left, y, px(v), y + row - 12], fill=color)
        if e == e:
            d.line([px(v - e), y + (row - 12) / 2, px(v + e), y + (row - 12) / 2], fill="black", width=2)
        d.text((8, y + 4), name[:56], fill="black", font=font)
        d.text((px(max(v + (e if e == e else 0), v)) + 8, y + 4), f"{v:.1f}  {note}", fill="black", font=font)
    d.line([left, top, left, h - bottom], fill="black")
    d.text((w // 2 - 6 * len(title) // 2, 15), title, fill="black", font=font)
    d.text((w // 2 - 3 * len(xlabel), h - 22), xlabel, fill="black", font=font)
    return _save(img, path)
