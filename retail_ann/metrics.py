"""Metrics and baselines (scikit-learn), computed on the same evaluation rows as the ANN.

Classification: accuracy, precision, recall and F1 at a decision threshold, ``best_f1`` (the F1 of
the best threshold on these same rows: optimistic, but threshold-free and comparable across
models), ROC-AUC, PR-AUC (average precision), Brier score and top-decile lift.
Regression: MAE, RMSE, R² on the original (currency) scale, and how well the predictions rank and
size customers: normalized Gini, Spearman's rank correlation, and decile MAPE (the measures of
google/lifetime_value; Wang, Liu & Miao 2019).
``bootstrap_intervals`` gives any of them percentile intervals over resampled evaluation rows.
Baselines: majority class and logistic regression (purchase); mean and ridge regression (spend),
fitted on the same transformed training features the ANN sees.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm


def best_f1_threshold(y_true: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``p >= threshold`` on these rows."""
    y_true = np.asarray(y_true).astype(int)
    if y_true.min() == y_true.max():
        return 0.5, 0.0
    precision, recall, thresholds = skm.precision_recall_curve(y_true, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    i = int(np.argmax(f1[:-1]))
    return float(thresholds[i]), float(f1[i])


def top_decile_lift(y_true: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the 10 % highest scores divided by the overall positive rate."""
    y_true = np.asarray(y_true, dtype=float)
    base = y_true.mean()
    if base == 0 or len(y_true) == 0:
        return float("nan")
    k = max(1, int(np.ceil(0.1 * len(y_true))))
    top = np.argsort(-np.asarray(p), kind="stable")[:k]
    return float(y_true[top].mean() / base)


def classification_metrics(y_true: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int)
    both = y_true.min() != y_true.max()
    out = {
        "threshold": float(threshold),
        "accuracy": skm.accuracy_score(y_true, pred),
        "precision": skm.precision_score(y_true, pred, zero_division=0),
        "recall": skm.recall_score(y_true, pred, zero_division=0),
        "f1": skm.f1_score(y_true, pred, zero_division=0),
        "best_f1": best_f1_threshold(y_true, p)[1],
        "roc_auc": skm.roc_auc_score(y_true, p) if both else float("nan"),
        "pr_auc": skm.average_precision_score(y_true, p) if both else float("nan"),
        "brier": skm.brier_score_loss(y_true, p),
        "top_decile_lift": top_decile_lift(y_true, p),
        "positive_rate": float(y_true.mean()),
        "rows": int(len(y_true)),
    }
    return {k: _round(v) for k, v in out.items()}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    out = {
        "mae": skm.mean_absolute_error(y_true, y_pred),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "r2": skm.r2_score(y_true, y_pred) if len(y_true) > 1 else float("nan"),
        "gini": normalized_gini(y_true, y_pred),
        "spearman": spearman(y_true, y_pred),
        "decile_mape": decile_mape(y_true, y_pred),
        "mean_actual": float(y_true.mean()),
        "mean_predicted": float(y_pred.mean()),
        "rows": int(len(y_true)),
    }
    return {k: _round(v) for k, v in out.items()}


def normalized_gini(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Gini of the gain curve of ``y_true`` ordered by ``y_pred`` (highest first), divided by that of
    the perfect order: 1 for a perfect ranking, about 0 for a random one. NaN without positive total."""
    y_true = np.asarray(y_true, dtype=float)
    total = y_true.sum()
    if len(y_true) == 0 or total <= 0:
        return float("nan")

    def gini(order: np.ndarray) -> float:
        return 2.0 * float(np.mean(np.cumsum(y_true[order]) / total)) - 1.0

    perfect = gini(np.argsort(-y_true, kind="stable"))
    return gini(np.argsort(-np.asarray(y_pred, dtype=float), kind="stable")) / perfect if perfect > 0 else float("nan")


def spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import rankdata

    a, b = rankdata(y_true), rankdata(y_pred)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def decile_mape(y_true: np.ndarray, y_pred: np.ndarray, bins: int = 10) -> float:
    """Mean over deciles of the predictions of |mean predicted - mean actual| / mean actual: whether
    the predictions have the right size where they rank customers. Deciles whose actual mean is 0
    (no spender among them) have no relative error and are left out."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if len(y_true) < bins:
        return float("nan")
    decile = np.minimum((np.argsort(np.argsort(y_pred, kind="stable"), kind="stable") * bins) // len(y_pred), bins - 1)
    errors = []
    for d in range(bins):
        actual = y_true[decile == d].mean()
        if actual > 0:
            errors.append(abs(y_pred[decile == d].mean() - actual) / actual)
    return float(np.mean(errors)) if errors else float("nan")


def bootstrap_intervals(statistics, n_rows: int, resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each figure ``statistics(rows)`` returns (a dict of floats, ``rows``
    an index array) over ``resamples`` draws of ``n_rows`` rows with replacement. Every figure sees
    the same draws, so a difference between two models' figures is an interval of its own (paired);
    draws where a figure is NaN (one class only, say) are left out of its interval."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        for name, value in statistics(rng.integers(0, n_rows, n_rows)).items():
            draws.setdefault(name, []).append(float(value) if value is not None else float("nan"))
    tail = 100 * (1 - level) / 2
    out = {}
    for name, values in draws.items():
        v = np.asarray(values)
        v = v[np.isfinite(v)]
        out[name] = (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) if len(v) else (
            float("nan"), float("nan"))
    return out


def purchase_baselines(
    x_train: np.ndarray, y_train: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]],
    x_test: np.ndarray, y_test: np.ndarray, seed: int = 0,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Majority class and logistic regression, fitted on the training rows that some fold fits.

    ``folds`` are ``(fit, validation)`` boolean masks over the training rows, as the ANN's members
    use them: the logistic threshold maximises F1 over out-of-fold probabilities (each validation
    fold predicted by a model fitted on that fold's fit rows), like the ANN's threshold.
    Returns (metrics per baseline, test-row probabilities per baseline)."""
    from sklearn.linear_model import LogisticRegression

    learned = np.logical_or.reduce([fit for fit, _ in folds])
    prior = float(np.mean(y_train[learned]))
    majority = 1.0 if prior >= 0.5 else 0.0
    p_major = np.full(len(y_test), prior)
    # The majority model predicts the majority class for every row (probability = training prior).
    m_major = classification_metrics(y_test, p_major, threshold=0.5 if majority == 0.0 else 0.0)

    def logistic(rows: np.ndarray):
        return LogisticRegression(max_iter=2000, random_state=seed).fit(x_train[rows], y_train[rows])

    final = logistic(learned)
    y_val, p_val = [], []
    for fit, val in folds:
        model = final if np.array_equal(fit, learned) else logistic(fit)
        y_val.append(y_train[val])
        p_val.append(model.predict_proba(x_train[val])[:, 1])
    thr, _ = best_f1_threshold(np.concatenate(y_val), np.concatenate(p_val))
    p_logit = final.predict_proba(x_test)[:, 1]
    return (
        {"baseline_majority": m_major, "baseline_logistic": classification_metrics(y_test, p_logit, thr)},
        {"baseline_majority": p_major, "baseline_logistic": p_logit},
    )


def spend_baselines(
    x_train: np.ndarray, s_train: np.ndarray, x_test: np.ndarray, s_test: np.ndarray
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Mean of the training spend, and ridge regression on the raw spend."""
    from sklearn.linear_model import Ridge

    p_mean = np.full(len(s_test), float(np.mean(s_train)))
    ridge = Ridge(alpha=1.0).fit(x_train, s_train)
    p_ridge = np.maximum(ridge.predict(x_test), 0.0)
    return (
        {"baseline_mean": regression_metrics(s_test, p_mean), "baseline_ridge": regression_metrics(s_test, p_ridge)},
        {"baseline_mean": p_mean, "baseline_ridge": p_ridge},
    )


def curves(y_true: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """ROC, PR, calibration and cumulative-gains points for plotting."""
    y_true = np.asarray(y_true).astype(int)
    fpr, tpr, _ = skm.roc_curve(y_true, p)
    precision, recall, _ = skm.precision_recall_curve(y_true, p)
    bins = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(p, bins) - 1, 0, 9)
    cal_pred, cal_true = [], []
    for b in range(10):
        m = idx == b
        if m.any():
            cal_pred.append(float(np.mean(p[m])))
            cal_true.append(float(np.mean(y_true[m])))
    order = np.argsort(-np.asarray(p), kind="stable")
    gains = np.concatenate([[0.0], np.cumsum(y_true[order]) / max(1, y_true.sum())])
    share = np.linspace(0, 1, len(gains))
    return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall,
            "cal_pred": cal_pred, "cal_true": cal_true, "gains_x": share, "gains_y": gains}


def _round(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return round(v, 6) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v
