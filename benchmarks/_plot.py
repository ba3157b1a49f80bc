"""The benchmarks' charts, with matplotlib (the ``bench`` extra: ``pip install -e ".[bench]"``): lines and numbered
scatters, log or linear axes, written atomically as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from lightlabel.utils.files import atomic_path  # noqa: E402


def _fmt(v: float, unit: str) -> str:
    """A tick or label value, in bytes with a decimal prefix (``unit="bytes"``) or plain."""
    if unit == "bytes":
        for suffix, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if v >= scale:
                return f"{v / scale:g} {suffix}"
        return f"{v:g} B"
    return f"{v:g}"


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def line_chart(path: str | Path, series: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str,
               xlabel: str, ylabel: str, logx: bool = False, logy: bool = False, yunit: str = "",
               size: tuple[int, int] = (900, 560), dashed: Sequence[str] = ()) -> Path:
    """``{name: (xs, ys)}`` as lines with markers and a legend."""
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", linestyle="--" if name in dashed else "-", label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xscale="log" if logx else "linear",
           yscale="log" if logy else "linear")
    if yunit:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v, yunit)))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def scatter_chart(path: str | Path, points: Sequence[tuple[str, float, float]], *, title: str, xlabel: str,
                  ylabel: str, logx: bool = False, xunit: str = "", width: int = 900) -> Path:
    """One numbered marker per ``(name, x, y)``; the legend (number, name, y) sits below the plot, not on it, so
    labels never cover markers however close the points are."""
    fig, ax = plt.subplots(figsize=(width / 100, 4.2 + 0.2 * len(points)))
    colours = plt.get_cmap("tab20").colors
    for i, (_name, x, y) in enumerate(points, 1):
        ax.scatter([x], [y], s=60, color=colours[(i - 1) % len(colours)], zorder=3)
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xscale="log" if logx else "linear")
    if xunit:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v, xunit)))
    ax.margins(0.08)
    ax.grid(True, alpha=0.3)
    legend = "\n".join(f"{i}. {name}: {y:.1f}" for i, (name, _, y) in enumerate(points, 1))
    fig.text(0.01, -0.02, legend, va="top", ha="left", fontsize=8, family="monospace")
    return _save(fig, path)
