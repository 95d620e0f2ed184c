"""The report's tables, from the test rows' labels and each model's predictions (numpy only):
the ANN against each baseline with a paired bootstrap interval on the difference, a decile table,
the confusion matrix at the stored threshold, and calibration bins with their counts."""
from __future__ import annotations

from typing import Callable

import numpy as np

from retail_ann.metrics import bootstrap_intervals

ANN = "ann"


def against_baselines(y: np.ndarray, predictions: dict[str, np.ndarray], figure: Callable[[np.ndarray, np.ndarray], float],
                      resamples: int = 200, seed: int = 0) -> list[dict]:
    """For each baseline in ``predictions`` (every key but ``ann``): the ANN's ``figure`` minus the
    baseline's on the test rows, and its 95 % interval over ``resamples`` paired draws of the rows
    (the same draws for both models). ``better`` is True when the interval lies above 0, False
    below it, None when it holds 0."""
    y = np.asarray(y)
    others = [name for name in predictions if name != ANN]

    def stats(rows: np.ndarray) -> dict[str, float]:
        ann = figure(y[rows], predictions[ANN][rows])
        return {name: ann - figure(y[rows], predictions[name][rows]) for name in others}

    everything = np.arange(len(y))
    point = stats(everything)
    intervals = bootstrap_intervals(stats, len(y), resamples=resamples, seed=seed)
    rows = []
    for name in others:
        lo, hi = intervals[name]
        rows.append({"baseline": name, "difference": point[name], "low": lo, "high": hi,
                     "better": True if lo > 0 else False if hi < 0 else None})
    return rows


def deciles(p: np.ndarray, y: np.ndarray | None = None, spend_pred: np.ndarray | None = None,
            spend: np.ndarray | None = None, bins: int = 10) -> list[dict]:
    """Customers cut into ``bins`` groups by the score (``p``, highest first): per group the
    customers, and where given the buyers and lift over the base rate, and the mean predicted
    and actual spend."""
    order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
    base = float(np.mean(y)) if y is not None else None
    out = []
    for i, rows in enumerate(np.array_split(order, bins)):
        if not len(rows):
            continue
        row = {"decile": i + 1, "customers": int(len(rows)), "mean_score": float(np.mean(p[rows]))}
        if y is not None:
            rate = float(np.mean(y[rows]))
            row.update(buyers=int(np.sum(y[rows])), rate=rate, lift=rate / base if base else float("nan"))
        if spend_pred is not None and spend is not None:
            row.update(mean_predicted_spend=float(np.mean(spend_pred[rows])), mean_spend=float(np.mean(spend[rows])))
        out.append(row)
    return out


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Counts at ``threshold``, with the accuracy there and the accuracy of calling no one a buyer
    (the majority class, when buyers are the minority)."""
    y = np.asarray(y).astype(int)
    decided = (np.asarray(p) >= threshold).astype(int)
    counts = {"true_positive": int(np.sum((decided == 1) & (y == 1))), "false_positive": int(np.sum((decided == 1) & (y == 0))),
              "false_negative": int(np.sum((decided == 0) & (y == 1))), "true_negative": int(np.sum((decided == 0) & (y == 0)))}
    return {**counts, "threshold": float(threshold), "accuracy": float(np.mean(decided == y)),
            "majority_accuracy": float(max(np.mean(y), 1 - np.mean(y)))}


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Per probability bin of width 1/``bins``: the rows in it, their mean predicted probability
    and the observed rate (bins with no row left out)."""
    y, p = np.asarray(y).astype(float), np.asarray(p, dtype=float)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        rows = idx == b
        if rows.any():
            out.append({"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "rows": int(rows.sum()),
                        "mean_predicted": float(p[rows].mean()), "observed": float(y[rows].mean())})
    return out


def permutation_importance(x: np.ndarray, y: np.ndarray, predict: Callable[[np.ndarray], np.ndarray],
                           blocks: dict[str, list[int]], figure: Callable[[np.ndarray, np.ndarray], float],
                           repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """How much ``figure`` falls on the rows ``x`` when one input's columns (``blocks``: input ->
    column positions, permuted together) are shuffled across rows: the mean over ``repeats``
    shuffles, largest first. Near 0 (or below): the model does not use that input on these rows."""
    rng = np.random.default_rng(seed)
    base = figure(y, predict(x))
    drops = {}
    for name, columns in blocks.items():
        losses = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, columns] = x[rng.permutation(len(x))][:, columns]
            losses.append(base - figure(y, predict(shuffled)))
        drops[name] = float(np.mean(losses))
    return dict(sorted(drops.items(), key=lambda kv: -kv[1]))
