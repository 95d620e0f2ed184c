"""Calibrated purchase probabilities: a monotone map from the network's probability to one that
matches observed rates, fitted on the validation rows and applied in the numpy scoring pass.

Candidates: ``none``; ``platt`` (a logistic regression on the network's logit, Platt 1999:
``p' = sigmoid(a * logit(p) + b)``; strictly monotone, so the ranking and ROC-AUC are kept);
``isotonic`` (a non-decreasing step fit, Zadrozny & Elkan 2002, stored as breakpoints and
interpolated linearly between them; only with ``ISOTONIC_MIN_ROWS`` validation rows, as it
overfits fewer). The choice is made by the Brier score of each candidate fitted on the other
folds of the validation rows (``FOLDS`` folds), never on the rows it is judged on, and a candidate
replaces a simpler one (in the order above) only when its Brier is lower by more than ``SE_MARGIN``
standard errors of the paired per-row difference: a gain within the noise keeps the simpler map
(on CDNOW isotonic's 0.00003 gain in validation became a 0.0016 loss on the test rows, and its
steps cost 0.027 of PR-AUC). The winner is then refitted on all validation rows. The test rows
play no part.

The spec stores the result in ``targets.purchase.calibration``; ``apply`` needs numpy only.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

METHODS = ("none", "platt", "isotonic")
ISOTONIC_MIN_ROWS = 1000   # validation rows isotonic needs before it may compete
FOLDS = 5
SE_MARGIN = 2.0            # standard errors a candidate's Brier gain must exceed to replace a simpler map
_EPS = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply(calibration: Mapping[str, Any] | None, p: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of the network's ``p`` (float64); ``p`` as it is without a calibration."""
    method = (calibration or {}).get("method", "none")
    if method == "none":
        return np.asarray(p, dtype=np.float64)
    if method == "platt":
        z = calibration["a"] * _logit(p) + calibration["b"]
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if method == "isotonic":
        return np.interp(np.asarray(p, dtype=np.float64), calibration["x"], calibration["y"])
    raise ValueError(f"unknown calibration method {method!r}")


def _fit(method: str, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6).fit(_logit(p).reshape(-1, 1), y)
        return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return {"method": "isotonic", "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_]}
    return {"method": "none"}


def fit_calibration(y: np.ndarray, p: np.ndarray, method: str = "auto", seed: int = 0) -> dict[str, Any]:
    """The calibration of validation probabilities ``p`` with labels ``y``: with ``method="auto"``
    the candidate with the lowest cross-validated Brier score, refitted on all rows (``brier_cv``
    holds every candidate's); else ``method`` itself."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    if method == "none":
        return {"method": "none", "why": "calibration: none in the config"}
    if y.min() == y.max() or min(np.bincount(y)) < FOLDS:
        return {"method": "none", "why": "too few buyers or non-buyers among the validation rows"}
    if method != "auto":
        return {**_fit(method, y, p), "rows": int(len(y))}
    candidates = [m for m in METHODS if m != "isotonic" or len(y) >= ISOTONIC_MIN_ROWS]
    held_out = {m: np.empty(len(y)) for m in candidates}
    for fit_rows, test_rows in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(p, y):
        for m in candidates:
            held_out[m][test_rows] = apply(_fit(m, y[fit_rows], p[fit_rows]), p[test_rows])
    errors = {m: (held_out[m] - y) ** 2 for m in candidates}
    best = candidates[0]
    for m in candidates[1:]:   # simplest first: replace only on a gain beyond the noise
        gain = errors[best] - errors[m]
        if gain.mean() > SE_MARGIN * gain.std(ddof=1) / np.sqrt(len(y)):
            best = m
    brier = {m: round(float(e.mean()), 6) for m, e in errors.items()}
    return {**_fit(best, y, p), "brier_cv": brier, "rows": int(len(y))}
