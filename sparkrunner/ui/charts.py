"""The dashboard's charts, drawn here as SVG (no script, nothing fetched): an ROC curve, a
confusion-matrix grid and bar charts. Each function returns markup safe to put in a page: every
text in it is escaped, and every number is a number."""

from __future__ import annotations

from html import escape
from typing import Sequence

from markupsafe import Markup

#: Colours: the curve and bars, the chance line and grid, text.
INK, FAINT, TEXT = "#2563eb", "#cbd5e1", "#1e293b"


def _num(value: float) -> str:
    return f"{value:.3g}" if value != int(value) else str(int(value))


def roc_curve(points: Sequence[tuple[float, float]], auc: float | None = None, element_id: str = "roc-curve") -> Markup:
    """An ROC curve: true positive rate against false positive rate, with the chance diagonal."""
    size, pad = 300, 40
    inner = size - 2 * pad

    def xy(fpr: float, tpr: float) -> str:
        return f"{pad + fpr * inner:.1f},{size - pad - tpr * inner:.1f}"

    ordered = sorted((min(max(f, 0.0), 1.0), min(max(t, 0.0), 1.0)) for f, t in points)
    path = " ".join(xy(f, t) for f, t in ordered)
    ticks = "".join(
        f'<line x1="{pad + v * inner:.1f}" y1="{size - pad}" x2="{pad + v * inner:.1f}" y2="{size - pad + 4}" stroke="{TEXT}"/>'
        f'<text x="{pad + v * inner:.1f}" y="{size - pad + 16}" font-size="10" text-anchor="middle">{v:g}</text>'
        f'<line x1="{pad - 4}" y1="{size - pad - v * inner:.1f}" x2="{pad}" y2="{size - pad - v * inner:.1f}" stroke="{TEXT}"/>'
        f'<text x="{pad - 6}" y="{size - pad - v * inner + 3:.1f}" font-size="10" text-anchor="end">{v:g}</text>'
        for v in (0, 0.25, 0.5, 0.75, 1))
    title = "ROC curve" + (f" (AUC {auc:.3f})" if auc is not None else "")
    return Markup(
        f'<svg id="{escape(element_id)}" class="chart" role="img" aria-label="{escape(title)}" '
        f'width="{size}" height="{size}" viewBox="0 0 {size} {size}" xmlns="http://www.w3.org/2000/svg">'
        f'<title>{escape(title)}</title>'
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="{FAINT}"/>'
        f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="{FAINT}" stroke-dasharray="4 4"/>'
        f'{ticks}<polyline class="roc-line" points="{path}" fill="none" stroke="{INK}" stroke-width="2"/>'
        f'<text x="{size / 2}" y="{size - 6}" font-size="11" text-anchor="middle">false positive rate</text>'
        f'<text x="12" y="{size / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {size / 2})">true positive rate</text>'
        f'<text x="{size / 2}" y="{pad - 14}" font-size="12" text-anchor="middle" fill="{TEXT}">{escape(title)}</text>'
        f'</svg>')


def confusion_matrix(rows: Sequence[Sequence[float]], labels: Sequence[str],
                     element_id: str = "confusion-matrix") -> Markup:
    """A confusion matrix as a grid: actual classes down, predicted across, darker for more."""
    cell, pad = 64, 70
    n = len(rows)
    most = max((v for row in rows for v in row), default=0) or 1
    cells = []
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            share = value / most
            fill = f"rgba(37, 99, 235, {0.08 + 0.8 * share:.2f})"
            colour = "#ffffff" if share > 0.55 else TEXT
            x, y = pad + j * cell, pad + i * cell
            cells.append(f'<rect class="cell" x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#ffffff"/>'
                         f'<text x="{x + cell / 2}" y="{y + cell / 2 + 5}" font-size="14" text-anchor="middle" '
                         f'fill="{colour}">{_num(value)}</text>')
    heads = "".join(
        f'<text x="{pad + k * cell + cell / 2}" y="{pad - 8}" font-size="11" text-anchor="middle">{escape(str(label))}</text>'
        f'<text x="{pad - 8}" y="{pad + k * cell + cell / 2 + 4}" font-size="11" text-anchor="end">{escape(str(label))}</text>'
        for k, label in enumerate(labels))
    width, height = pad + n * cell + 10, pad + n * cell + 24
    return Markup(
        f'<svg id="{escape(element_id)}" class="chart" role="img" aria-label="confusion matrix" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<title>confusion matrix</title>{heads}{"".join(cells)}'
        f'<text x="{pad + n * cell / 2}" y="{pad - 26}" font-size="11" text-anchor="middle">predicted</text>'
        f'<text x="{pad + n * cell / 2}" y="{height - 4}" font-size="11" text-anchor="middle">rows: actual</text>'
        f'</svg>')


def bar_chart(items: Sequence[tuple[str, float]], title: str, element_id: str) -> Markup:
    """Horizontal bars, one per (label, value), scaled to the largest magnitude."""
    label_width, bar_width, row = 150, 260, 24
    most = max((abs(v) for _, v in items), default=0) or 1
    bars = []
    for k, (label, value) in enumerate(items):
        y = 28 + k * row
        length = bar_width * abs(value) / most
        bars.append(f'<text x="{label_width - 6}" y="{y + 14}" font-size="11" text-anchor="end">{escape(str(label))}</text>'
                    f'<rect class="bar-rect" x="{label_width}" y="{y + 2}" width="{length:.1f}" height="{row - 6}" fill="{INK}"/>'
                    f'<text x="{label_width + length + 4:.1f}" y="{y + 14}" font-size="11">{_num(value)}</text>')
    width, height = label_width + bar_width + 60, 36 + len(items) * row
    return Markup(
        f'<svg id="{escape(element_id)}" class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<title>{escape(title)}</title><text x="4" y="16" font-size="12" fill="{TEXT}">{escape(title)}</text>'
        f'{"".join(bars)}</svg>')
