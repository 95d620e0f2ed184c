"""Drift at scoring: each input's distribution on the scored rows against the training rows.

Training stores, in the spec's ``profile``, each input column's distribution on the training rows:
a numeric column's decile edges and the share of rows in each bin plus the share missing (null,
NaN or ±inf); a categorical column's share of each kept level plus the unknown bucket. Scoring
counts the same bins in every batch it transforms (``count_values``, on the executors; a
``ValueCounts`` accumulator sums them) and the driver turns the sums into the manifest's
``drift`` section (``summary``): per column the population stability index

    PSI = sum over bins of (scored share - training share) x ln(scored share / training share)

(shares floored at ``SHARE_FLOOR``), the missing share beside the training one, and the columns
whose PSI passes the bound (0.1 is the usual "some shift", 0.25 "a large one").
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from retail_ann.preprocessing import NUMERIC, CategoricalFeature, FeatureSpec, category_positions, numeric_column

log = logging.getLogger(__name__)

PROFILE_BINS = 10       # deciles of a numeric column's training values
SHARE_FLOOR = 1e-4      # a bin empty on one side counts as this share (PSI would be infinite)


def _bins(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin of each finite value: 0 below the first edge, k for [edge k-1, edge k), len(edges) above."""
    return np.searchsorted(edges, values, side="right")


def _numeric_counts(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values of ``x`` in each bin of ``edges``, then the missing (NaN, ±inf) ones."""
    finite = np.isfinite(x)
    return np.append(np.bincount(_bins(edges, x[finite]), minlength=len(edges) + 1), len(x) - finite.sum())


def _category_counts(batch, c: CategoricalFeature) -> np.ndarray:
    """Rows of each kept level of ``c``, then of its unknown bucket."""
    return np.bincount(category_positions(batch, c), minlength=len(c.levels) + 1)


def fit_profile(spec: FeatureSpec, df) -> dict[str, Any]:
    """The training distribution of every input column of ``spec`` on rows ``df``."""
    n = max(len(df), 1)
    profile: dict[str, Any] = {}
    for f in spec.numeric:
        x = numeric_column(df, f.name)
        finite = x[np.isfinite(x)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, PROFILE_BINS + 1)[1:-1])) if finite.size else np.array([])
        profile[f.name] = {"edges": [float(e) for e in edges],
                           "shares": [float(k) / n for k in _numeric_counts(edges, x)]}
    for c in spec.categorical:
        profile[c.name] = {"shares": [float(k) / n for k in _category_counts(df, c)]}
    return profile


def count_values(spec: FeatureSpec, batch) -> dict[str, list[int]]:
    """Rows of ``batch`` in each profile bin of each input column (numeric: the bins, then the
    missing), for ``summary``. Columns without a profile (a model trained before profiles) are
    left out."""
    counts = {f.name: _numeric_counts(np.asarray(spec.profile[f.name]["edges"]), numeric_column(batch, f.name)).tolist()
              for f in spec.numeric if f.name in spec.profile}
    counts.update({c.name: _category_counts(batch, c).tolist() for c in spec.categorical if c.name in spec.profile})
    return counts


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of shares ``actual`` against ``expected``."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), SHARE_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def summary(spec: FeatureSpec, counts: dict[str, list[int]], bound: float) -> dict[str, Any] | None:
    """The manifest's ``drift`` section from the summed ``count_values``; None without profiles.
    Logs a warning naming the columns past ``bound``."""
    columns = {}
    for name, got in counts.items():
        got = np.asarray(got, dtype=np.float64)
        rows = got.sum()
        if rows == 0:
            continue
        expected = np.asarray(spec.profile[name]["shares"])
        entry = {"psi": round(psi(expected, got / rows), 4)}
        if spec.input_columns.get(name) == NUMERIC:
            entry["missing_share"] = round(float(got[-1] / rows), 4)
            entry["training_missing_share"] = round(float(expected[-1]), 4)
        entry["shares"] = [round(float(v), 4) for v in got / rows]
        columns[name] = entry
    if not columns:
        return None
    drifted = sorted((n for n, e in columns.items() if e["psi"] > bound), key=lambda n: -columns[n]["psi"])
    if drifted:
        log.warning("drift: %d input column(s) past PSI %g against the training rows: %s", len(drifted), bound,
                    ", ".join(f"{n} {columns[n]['psi']:.2f}" for n in drifted))
    return {"bound": bound, "drifted": drifted, "columns": columns}


def bin_labels(spec: FeatureSpec, name: str) -> list[str]:
    """What each profile bin of input column ``name`` holds, in the order of its shares."""
    categorical = {c.name: c for c in spec.categorical}
    if name in categorical:
        return [*categorical[name].levels, "(other)"]
    edges = [f"{e:.4g}" for e in spec.profile[name]["edges"]]
    if not edges:
        return ["all values", "missing"]
    return [f"< {edges[0]}", *[f"{a} – {b}" for a, b in zip(edges[:-1], edges[1:])], f"≥ {edges[-1]}", "missing"]


def report_html(spec: FeatureSpec, section: dict[str, Any], title: str, shown: int = 8) -> str:
    """A page for people: every input column's PSI, worst first, and for the ``shown`` worst the
    training and scored shares of each bin side by side (inline SVG, no files beside it)."""
    import html

    e = html.escape
    worst = sorted(section["columns"], key=lambda n: -section["columns"][n]["psi"])
    rows = "".join(
        f"<tr><td>{e(n)}</td><td>{section['columns'][n]['psi']:.3f}</td>"
        f"<td>{'past the bound' if n in section['drifted'] else ''}</td></tr>" for n in worst)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<p>Population stability index of each input column against the model's training rows "
             f"(bound {section['bound']:g}: {len(section['drifted'])} column(s) past it). Below 0.1 the "
             "distribution is as in training; 0.1 to 0.25 it has moved; past 0.25 it has moved a lot, and the "
             "model is scoring customers unlike those it learned from.</p>",
             f"<table><tr><th>input column</th><th>PSI</th><th></th></tr>{rows}</table>"]
    for name in worst[:shown]:
        parts += [f"<h2>{e(name)}: PSI {section['columns'][name]['psi']:.3f}</h2>",
                  _bars_svg(bin_labels(spec, name), spec.profile[name]["shares"], section["columns"][name]["shares"])]
    parts.append("</body></html>")
    return "\n".join(parts)


def _bars_svg(labels: list[str], training: list[float], scored: list[float]) -> str:
    """Horizontal bars, one pair per bin: training (grey) above scored (blue), shares in %."""
    import html

    row, width, left = 26, 420, 190
    top = max(max(training, default=0), max(scored, default=0), 1e-9)
    items = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + width + 130}' height='{row * len(labels) + 24}' "
             "font-family='sans-serif' font-size='11'>",
             "<rect x='0' y='2' width='10' height='8' fill='#999'/><text x='14' y='10'>training</text>"
             "<rect x='80' y='2' width='10' height='8' fill='#3572b0'/><text x='94' y='10'>scored</text>"]
    for i, (label, t, s) in enumerate(zip(labels, training, scored)):
        y = 18 + i * row
        items += [f"<text x='{left - 6}' y='{y + 14}' text-anchor='end'>{html.escape(label)}</text>",
                  f"<rect x='{left}' y='{y + 2}' width='{width * t / top:.1f}' height='10' fill='#999'/>",
                  f"<rect x='{left}' y='{y + 12}' width='{width * s / top:.1f}' height='10' fill='#3572b0'/>",
                  f"<text x='{left + width * max(t, s) / top + 4:.1f}' y='{y + 16}'>{100 * t:.1f} → {100 * s:.1f} %</text>"]
    items.append("</svg>")
    return "".join(items)
