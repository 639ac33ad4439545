"""What of a job's result the dashboard can draw, in ModelOp's shapes.

A metrics job's result (as ModelOp's monitors write it): ``roc_curve`` as ``[{"fpr", "tpr"}]``
with ``auc``; ``confusion_matrix`` as rows (lists, or dicts keyed by the predicted class, or a
dict of such rows keyed by the actual class); scores such as ``accuracy``, ``precision``,
``recall``, ``f1_score``, ``f2_score``; drift per feature (a key naming ``drift`` whose value maps
features to a number, or to a dict holding one). A scoring job's counts (``recordsRead``,
``recordsScored``, ``recordsRejected``, ``rowsWritten``). What is not recognised is only shown as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any

from markupsafe import Markup

from . import charts

SCORES = ("auc", "accuracy", "precision", "recall", "f1_score", "f2_score")
COUNTS = ("recordsRead", "recordsScored", "recordsRejected", "rowsWritten")


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def roc_points(value: Any) -> list[tuple[float, float]] | None:
    if not isinstance(value, list) or not value:
        return None
    points = [(p.get("fpr"), p.get("tpr")) for p in value if isinstance(p, dict)]
    if len(points) != len(value) or not all(_number(f) and _number(t) for f, t in points):
        return None
    return [(float(f), float(t)) for f, t in points]


def confusion_rows(value: Any) -> tuple[list[list[float]], list[str]] | None:
    """(rows, class labels) of a confusion matrix in any of ModelOp's shapes."""
    if isinstance(value, dict) and value and all(isinstance(r, dict) for r in value.values()):
        labels = [str(k) for k in value]
        rows = [[row.get(label, row.get(_as_int(label), 0)) for label in labels] for row in value.values()]
    elif isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        labels = [str(k) for k in value[0]]
        rows = [[row.get(k, 0) for k in value[0]] for row in value]
    elif isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        labels = [str(k) for k in range(len(value))]
        rows = value
    else:
        return None
    if not all(len(r) == len(labels) and all(_number(v) for v in r) for r in rows) or len(rows) != len(labels):
        return None
    return [[float(v) for v in r] for r in rows], labels


def _as_int(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def drift_values(value: Any) -> list[tuple[str, float]] | None:
    """(feature, value) of per-feature drift: numbers, or the first number of each feature's dict."""
    if not isinstance(value, dict) or not value:
        return None
    found = []
    for feature, measure in value.items():
        if isinstance(measure, dict):
            measure = next((v for v in measure.values() if _number(v)), None)
        if not _number(measure):
            return None
        found.append((str(feature), float(measure)))
    return found


def charts_of(result: Any) -> list[Chart]:
    """The charts a job's result makes, in the order a reader wants them."""
    if not isinstance(result, dict):
        return []
    drawn: list[Chart] = []
    points = roc_points(result.get("roc_curve"))
    if points:
        auc = result.get("auc") if _number(result.get("auc")) else None
        drawn.append(Chart("ROC curve", charts.roc_curve(points, auc)))
    matrix = confusion_rows(result.get("confusion_matrix"))
    if matrix:
        drawn.append(Chart("Confusion matrix", charts.confusion_matrix(*matrix)))
    scores = [(name, float(result[name])) for name in SCORES if _number(result.get(name))]
    if scores:
        drawn.append(Chart("Scores", charts.bar_chart(scores, "Scores", "scores-chart")))
    for key, value in result.items():
        if "drift" in key.lower() and (values := drift_values(value)):
            drawn.append(Chart(f"Drift per feature ({key})",
                               charts.bar_chart(values, f"{key} per feature", f"drift-chart-{len(drawn)}")))
    counts = [(name, float(result[name])) for name in COUNTS if _number(result.get(name))]
    if counts:
        drawn.append(Chart("Records", charts.bar_chart(counts, "Records", "records-chart")))
    return drawn
