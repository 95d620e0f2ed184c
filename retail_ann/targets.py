"""The two targets a model predicts, one object each: how its networks are trained (``fit``), how
they are judged on the test rows (``evaluate``), and, beside them, how the networks' outputs become
predictions (``predictions``, ``spend_from_outputs``: numpy only, scoring runs them on executors).

- ``PurchaseTarget``: will the customer buy in the horizon. A sigmoid network (binary
  cross-entropy), its probabilities calibrated on the validation rows (``calibration``); the
  decision threshold is the F1-maximising one of the calibrated validation probabilities (or fixed).
- ``SpendTarget``: how much. ``cfg.spend_target`` chooses the networks:

  - ``two_stage`` (default): E[spend] = P(buy) x E[spend | buy]. The second network is trained on
    the buyers only, with an exponential output (log link) and the Poisson deviance on spend divided
    by the mean buyer spend: it estimates the conditional mean without the retransformation bias of
    a log target. P(buy) is the purchase network when the purchase label agrees with ``spend > 0``
    (on >= 99 % of the training rows), else its own gate network ``spend_gate``.
  - ``poisson``: one network, E[spend] itself, through an exponential output (log link) trained
    with the Poisson deviance on every row's spend (zeros too) divided by the mean spend of the fit
    rows; no gate (better than ``two_stage`` on CDNOW's selection splits, worse on a generated
    shop and on the quality table: ``bench/RESULTS.md``, session 14).
  - ``ziln``: one network with a zero-inflated lognormal head (``model.ziln_loss``) on spend divided
    by the mean buyer spend: P(spend > 0), and mu and sigma of a buyer's log spend; E[spend] =
    P x exp(mu + sigma^2 / 2).
  - ``log1p``: one network on standardised ``log1p(spend)`` over all rows, mapped back with Duan's
    smearing factor (estimated on validation rows).
  - ``raw``: one network on standardised spend with plain MSE (the seed's approach).

  ``spec.targets["spend"]`` records ``target``, ``center``, ``scale``, ``smearing`` and ``gate``.

Keras comes in through the ``keras`` module each ``fit`` is given (``networks.keras_session``), and
the training helpers are imported inside the methods, so importing this module needs numpy only.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from retail_ann.calibration import apply as calibrate, fit_calibration
from retail_ann.errors import InputError
from retail_ann.model import forward, ziln_mean
from retail_ann.schemas import PREDICTED_PURCHASE, PREDICTED_SPEND, PURCHASE_PROBABILITY

if TYPE_CHECKING:   # training only; executors import this module for predictions
    from retail_ann.config import TrainConfig
    from retail_ann.splits import TrainingRows

log = logging.getLogger(__name__)

PURCHASE = "purchase"
SPEND = "spend"
SPEND_GATE = "spend_gate"
TASKS = (PURCHASE, SPEND)
NETWORKS = (PURCHASE, SPEND, SPEND_GATE)

MIN_BUYERS = 20          # a spend model needs this many rows with spend > 0
GATE_AGREEMENT = 0.99    # purchase label == (spend > 0) on this share of rows: reuse it as the gate

NetworkRunner = Callable[[str, np.ndarray], np.ndarray]
"""``run(network_name, x) -> outputs``: one network's output for transformed rows ``x``."""


@dataclass
class Trained:
    """What fitting a target leaves: its entry of ``spec.targets``, its merged networks by name,
    their training histories, and (purchase) the probabilities on the validation rows."""

    info: dict
    models: dict[str, Any]
    histories: dict[str, dict]
    validation: np.ndarray | None = None


@dataclass
class Evaluation:
    """A target's metrics on the test rows (the ANN's and the baselines'), and what the report plots."""

    metrics: dict
    plots: dict = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)   # input -> fall of the figure when shuffled


class PurchaseTarget:
    """``will_purchase``: one sigmoid network, its threshold decided on the validation rows."""

    name = PURCHASE

    def __init__(self, label: str, cfg: "TrainConfig", blocks: dict[str, list[int]] | None = None) -> None:
        self.label, self.cfg, self.blocks = label, cfg, blocks or {}

    def fit(self, keras, rows: "TrainingRows", y: np.ndarray) -> Trained:
        """Train on ``rows`` with labels ``y`` (0/1 per training row)."""
        from retail_ann.metrics import best_f1_threshold
        from retail_ann.networks import train_classifier

        model, history, p_val = train_classifier(keras, PURCHASE, rows, y, self.cfg)
        cal = fit_calibration(y[rows.validation], p_val, self.cfg.calibration, self.cfg.seed)
        p_val = calibrate(cal, p_val)   # the threshold is chosen on the probabilities scoring gives
        if self.cfg.threshold is not None:
            thr, rule = float(self.cfg.threshold), "fixed by configuration"
        else:
            thr, rule = best_f1_threshold(y[rows.validation], p_val)[0], "max F1 on validation rows"
        info = {"label": self.label, "threshold": round(float(thr), 6), "threshold_rule": rule,
                "positive_rate": round(float(y[rows.fit].mean()), 6), "calibration": cal}
        log.info("purchase calibration: %s (cross-validated Brier on the validation rows: %s)", cal["method"],
                 ", ".join(f"{k} {v:.5f}" for k, v in cal.get("brier_cv", {}).items()) or cal.get("why", "-"))
        return Trained(info, {PURCHASE: model}, {PURCHASE: history}, p_val)

    def evaluate(self, trained: Trained, rows: "TrainingRows", y: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, weights: Mapping[str, Mapping[str, np.ndarray]]) -> Evaluation:
        """The ANN (numpy forward of ``weights``) and the baselines (fitted on ``rows``) on the test rows."""
        from retail_ann.metrics import classification_metrics, purchase_baselines

        thr = trained.info["threshold"]
        raw = forward(weights[PURCHASE], x_test)
        p_test = calibrate(trained.info["calibration"], raw)
        base, base_p = purchase_baselines(rows.x, y, rows.folds, x_test, y_test, self.cfg.seed)
        metrics = {"ann": {**classification_metrics(y_test, p_test, thr),
                           "brier_uncalibrated": round(float(np.mean((raw - y_test) ** 2)), 6)}, **base}
        importance = _importance(x_test, y_test, lambda x: forward(weights[PURCHASE], x), self.blocks, self.cfg.seed)
        log.info("purchase test: ROC-AUC %.4f (logistic %.4f), F1 %.4f at %.3f (best %.4f)",
                 metrics["ann"]["roc_auc"] or float("nan"), metrics["baseline_logistic"]["roc_auc"] or float("nan"),
                 metrics["ann"]["f1"], thr, metrics["ann"]["best_f1"])
        return Evaluation(metrics, {"y": y_test, "p": {"ann": p_test, **base_p}, "p_uncalibrated": raw}, importance)


def _importance(x: np.ndarray, y: np.ndarray, predict, blocks: dict[str, list[int]], seed: int) -> dict[str, float]:
    """Permutation importance of each input for the ROC-AUC on the test rows (``analysis``)."""
    from sklearn.metrics import roc_auc_score

    from retail_ann.analysis import permutation_importance

    if not blocks or y.min() == y.max():
        return {}
    return {k: round(v, 6) for k, v in permutation_importance(x, y, predict, blocks, roc_auc_score, seed=seed).items()}


class SpendTarget:
    """``future_spend``: the networks ``cfg.spend_target`` names (module docstring)."""

    name = SPEND

    def __init__(self, label: str, cfg: "TrainConfig") -> None:
        self.label, self.cfg = label, cfg

    def fit(self, keras, rows: "TrainingRows", s: np.ndarray, y: np.ndarray | None = None) -> Trained:
        """Train on ``rows`` with spend ``s``; ``y``, the purchase labels of the same rows when a
        purchase network is trained beside it (whether it can be the gate is decided on these
        training rows, never the test rows)."""
        from retail_ann.networks import train_classifier, train_regressor

        cfg = self.cfg
        info: dict[str, Any] = {"target": cfg.spend_target}
        models: dict[str, Any] = {}
        hist: dict[str, dict] = {}
        fit = rows.fit
        if cfg.spend_target == "raw":
            center, scale = float(s[fit].mean()), float(s[fit].std() or 1.0)
            model, h, _ = train_regressor(keras, SPEND, rows, (s - center) / scale, cfg)
            info.update(center=center, scale=scale, smearing=1.0)
        elif cfg.spend_target == "log1p":
            t = np.log1p(s)
            center, scale = float(t[fit].mean()), float(t[fit].std() or 1.0)
            model, h, pred_val = train_regressor(keras, SPEND, rows, (t - center) / scale, cfg)
            resid = t[rows.validation] - (center + scale * pred_val)
            info.update(center=center, scale=scale, smearing=_smearing(resid))
        elif cfg.spend_target == "poisson":
            _check_buyers(s > 0, rows)
            scale = float(s[fit].mean())
            model, h, _ = train_regressor(keras, SPEND, rows, s / scale, cfg, output="exponential")
            info.update(center=0.0, scale=scale, smearing=1.0)
        elif cfg.spend_target == "ziln":
            buy = s > 0
            _check_buyers(buy, rows)
            scale = float(s[buy & fit].mean())
            log_s = np.log(s[buy & fit] / scale)
            prior = float(np.clip(buy[fit].mean(), 1e-4, 1 - 1e-4))
            sigma = max(float(log_s.std()), 0.05)
            # the output starts at the fit rows' buyer share, mean and spread of log spend
            bias = [math.log(prior / (1 - prior)), float(log_s.mean()), sigma + math.log(-math.expm1(-sigma))]
            model, h, _ = train_regressor(keras, SPEND, rows, s / scale, cfg, output="ziln", output_bias=bias)
            info.update(center=0.0, scale=scale, smearing=1.0)
        else:  # two_stage
            buy = s > 0
            _check_buyers(buy, rows)
            gate = None
            if y is not None:
                agree = float(np.mean(y == buy))
                if agree >= GATE_AGREEMENT:
                    gate = PURCHASE
                else:
                    log.info("purchase label agrees with spend > 0 on %.1f%% of rows: training a separate gate",
                             100 * agree)
            if gate is None:
                gate = SPEND_GATE
                models[SPEND_GATE], hist[SPEND_GATE], _ = train_classifier(keras, SPEND_GATE, rows,
                                                                            buy.astype(np.int8), cfg)
            scale = float(s[buy & fit].mean())
            model, h, _ = train_regressor(keras, SPEND, rows.subset(buy), s[buy] / scale, cfg, output="exponential")
            info.update(center=0.0, scale=scale, smearing=1.0, gate=gate)
        models[SPEND], hist[SPEND] = model, h
        info = {k: (round(v, 8) if isinstance(v, float) else v) for k, v in info.items()}
        info["label"] = self.label
        return Trained(info, models, hist)

    def evaluate(self, targets: Mapping[str, Any], rows: "TrainingRows", s: np.ndarray, x_test: np.ndarray,
                 s_test: np.ndarray, weights: Mapping[str, Mapping[str, np.ndarray]]) -> Evaluation:
        """The ANN (``predictions`` with ``targets`` = spec.targets and the numpy forward of
        ``weights``) and the baselines (fitted on the rows some member fits) on the test rows."""
        from retail_ann.metrics import regression_metrics, spend_baselines

        pred = predictions(targets, x_test, lambda name, x: forward(weights[name], x), (SPEND,))[PREDICTED_SPEND]
        base, base_p = spend_baselines(rows.x[rows.learned], s[rows.learned], x_test, s_test)
        metrics = {"ann": regression_metrics(s_test, pred), **base}
        log.info("spend test: R2 %.4f (ridge %.4f, mean %.4f), MAE %.2f",
                 metrics["ann"]["r2"] or float("nan"), metrics["baseline_ridge"]["r2"] or float("nan"),
                 metrics["baseline_mean"]["r2"] or float("nan"), metrics["ann"]["mae"])
        return Evaluation(metrics, {"y": s_test, "p": {"ann": pred, **base_p}})


def _check_buyers(buy: np.ndarray, rows: "TrainingRows") -> None:
    short = [g for g in range(rows.groups) if (buy & (rows.fold == g)).sum() < 2]
    if (buy & rows.fit).sum() < MIN_BUYERS or short:
        raise InputError(f"too few rows with positive spend to train the spend model: {int((buy & rows.fit).sum())} "
                         f"(need at least {MIN_BUYERS}, and 2 in each validation fold)")


def _smearing(resid: np.ndarray) -> float:
    """Duan's smearing factor mean(exp(residual)) for mapping a log-scale prediction back."""
    if len(resid) == 0:
        return 1.0
    return float(np.mean(np.exp(np.clip(resid, -20, 20))))


# ------------------------------------------------------------- outputs -> predictions (numpy only)
def predictions(
    targets: Mapping[str, Any], x: np.ndarray, run: NetworkRunner, tasks: Iterable[str],
) -> dict[str, np.ndarray]:
    """``purchase_probability`` and ``predicted_purchase`` (the stored threshold) and/or
    ``predicted_spend`` (currency, >= 0) for ``tasks``; ``targets`` is ``spec.targets``.
    A two-stage spend model reuses the purchase probability when the purchase network is its gate."""
    tasks = tuple(tasks)
    out: dict[str, np.ndarray] = {}
    p = None
    if PURCHASE in tasks:
        p = np.asarray(run(PURCHASE, x)).reshape(-1)   # the network's: a two-stage spend's gate was trained on it
        calibrated = calibrate(targets[PURCHASE].get("calibration"), p)
        out[PURCHASE_PROBABILITY] = calibrated
        out[PREDICTED_PURCHASE] = (calibrated >= float(targets[PURCHASE]["threshold"])).astype(np.int32)
    if SPEND in tasks:
        info = targets[SPEND]
        gate = None
        if info["target"] == "two_stage":
            gate = p if info["gate"] == PURCHASE and p is not None else np.asarray(run(info["gate"], x)).reshape(-1)
        output = np.asarray(run(SPEND, x))
        out[PREDICTED_SPEND] = spend_from_outputs(info, output if info["target"] == "ziln" else output.reshape(-1), gate)
    return out


def spend_from_outputs(spend_info: Mapping[str, Any], output: np.ndarray,
                       gate_probability: np.ndarray | None = None) -> np.ndarray:
    """Expected spend from the spend network's output (and, two-stage, the gate probability); a
    ziln network's output is ``(n, 3)``."""
    out = np.asarray(output, dtype=np.float64)
    center, scale = float(spend_info["center"]), float(spend_info["scale"])
    target = spend_info["target"]
    if target == "raw":
        return np.maximum(center + scale * out, 0.0)
    if target == "log1p":
        t = np.minimum(center + scale * out, 50.0)
        return np.maximum(np.exp(t) * float(spend_info["smearing"]) - 1.0, 0.0)
    if target == "ziln":
        return scale * ziln_mean(out)
    if target == "poisson":
        return scale * out
    if target == "two_stage":
        if gate_probability is None:
            raise ValueError("a two-stage spend model needs the gate probability")
        return np.asarray(gate_probability, dtype=np.float64) * np.maximum(center + scale * out, 0.0)
    raise ValueError(f"unknown spend target {target!r}")
