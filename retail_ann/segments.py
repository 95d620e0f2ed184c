"""The test metrics by customer segment, so that a model good on average but poor for some group
shows it: new vs returning customers (``n_orders`` in the lookback), the largest locations, age
bands, and any column named in ``segment_columns`` (its most frequent levels).

Segments are read from the test rows' own feature values (as of the cutoff: nothing after it), and
a segment needs ``MIN_ROWS`` test rows to be shown (its figures would be noise below that).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from retail_ann.features import N_ORDERS
from retail_ann.schemas import AGE, LOCATION

MIN_ROWS = 30
LEVELS = 5   # most frequent levels of a categorical segment column shown; the rest are "other"
AGE_BANDS = ((0, 25), (25, 35), (35, 50), (50, 65), (65, 200))


def masks(test: pd.DataFrame, columns: Iterable[str] = ()) -> dict[str, dict[str, np.ndarray]]:
    """``{dimension: {segment: boolean mask of the test rows}}`` for the dimensions ``test`` has."""
    out: dict[str, dict[str, np.ndarray]] = {}
    if N_ORDERS in test:
        orders = pd.to_numeric(test[N_ORDERS], errors="coerce").fillna(0).to_numpy()
        out["customer"] = {"new (no order in the lookback)": orders == 0, "returning": orders > 0}
    if AGE in test:
        age = pd.to_numeric(test[AGE], errors="coerce").to_numpy()
        bands = {f"{lo}-{hi - 1}" if hi < 200 else f"{lo}+": (age >= lo) & (age < hi) for lo, hi in AGE_BANDS}
        out["age"] = {**bands, "unknown": np.isnan(age)}
    for column in dict.fromkeys([LOCATION, *columns]):
        if column in test:
            values = test[column].astype("string").fillna("(missing)")
            top = values.value_counts().index[:LEVELS]
            out[column] = {**{str(v): (values == v).to_numpy() for v in top}, "other": (~values.isin(top)).to_numpy()}
    return out


def segment_metrics(segments: dict[str, dict[str, np.ndarray]], y: np.ndarray | None = None,
                    p: np.ndarray | None = None, spend: np.ndarray | None = None,
                    predicted_spend: np.ndarray | None = None) -> list[dict]:
    """Per segment with at least ``MIN_ROWS`` rows: rows, and the purchase figures (base rate,
    mean probability, ROC-AUC where both classes occur, Brier) and/or the spend figures (mean
    actual and predicted, R²)."""
    from sklearn.metrics import roc_auc_score

    from retail_ann.metrics import regression_metrics

    rows = []
    for dimension, groups in segments.items():
        for name, mask in groups.items():
            n = int(mask.sum())
            if n < MIN_ROWS:
                continue
            row: dict = {"dimension": dimension, "segment": name, "rows": n}
            if y is not None and p is not None:
                ys, ps = y[mask], p[mask]
                row.update(positive_rate=round(float(ys.mean()), 4), mean_probability=round(float(ps.mean()), 4),
                           roc_auc=round(float(roc_auc_score(ys, ps)), 4) if ys.min() != ys.max() else None,
                           brier=round(float(np.mean((ps - ys) ** 2)), 4))
            if spend is not None and predicted_spend is not None:
                m = regression_metrics(spend[mask], predicted_spend[mask])
                row.update(mean_spend=m["mean_actual"], mean_predicted_spend=m["mean_predicted"], r2=m["r2"])
            rows.append(row)
    return rows
