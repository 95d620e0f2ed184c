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

from retail_ann.preprocessing import NUMERIC, FeatureSpec, category_positions, numeric_column

log = logging.getLogger(__name__)

PROFILE_BINS = 10       # deciles of a numeric column's training values
SHARE_FLOOR = 1e-4      # a bin empty on one side counts as this share (PSI would be infinite)


def _bins(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin of each finite value: 0 below the first edge, k for [edge k-1, edge k), len(edges) above."""
    return np.searchsorted(edges, values, side="right")


def fit_profile(spec: FeatureSpec, df) -> dict[str, Any]:
    """The training distribution of every input column of ``spec`` on rows ``df``."""
    n = max(len(df), 1)
    profile: dict[str, Any] = {}
    for f in spec.numeric:
        x = numeric_column(df, f.name)
        finite = x[np.isfinite(x)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, PROFILE_BINS + 1)[1:-1])) if finite.size else []
        counts = np.bincount(_bins(np.asarray(edges), finite), minlength=len(edges) + 1)
        profile[f.name] = {"edges": [float(e) for e in edges],
                           "shares": [float(c) / n for c in counts] + [float(len(x) - finite.size) / n]}
    for c in spec.categorical:
        counts = np.bincount(category_positions(df, c), minlength=len(c.levels) + 1)
        profile[c.name] = {"shares": [float(k) / n for k in counts]}
    return profile


def count_values(spec: FeatureSpec, batch) -> dict[str, list[int]]:
    """Rows of ``batch`` in each profile bin of each input column (numeric: the bins, then the
    missing), for ``summary``. Columns without a profile (a model trained before profiles) are
    left out."""
    counts = {}
    for f in spec.numeric:
        if f.name not in spec.profile:
            continue
        edges = np.asarray(spec.profile[f.name]["edges"])
        x = numeric_column(batch, f.name)
        finite = np.isfinite(x)
        counts[f.name] = np.bincount(_bins(edges, x[finite]), minlength=len(edges) + 1).tolist() + [
            int(len(x) - finite.sum())]
    for c in spec.categorical:
        if c.name in spec.profile:
            counts[c.name] = np.bincount(category_positions(batch, c), minlength=len(c.levels) + 1).tolist()
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
