"""Ranking and sizing measures of spend predictions, and the bootstrap interval, each against an
independent computation (pandas / scipy / the normal approximation), not against its own output."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retail_ann.metrics import bootstrap_intervals, decile_mape, normalized_gini, regression_metrics, spearman

RNG = np.random.default_rng(5)
SPEND = np.where(RNG.random(4000) < 0.4, RNG.lognormal(3, 1, 4000), 0.0)


def _gini_as_lifetime_value_computes_it(y_true, y_pred) -> float:
    """google/lifetime_value's cumulative_true + gini_from_gain, in pandas."""
    def cumulative(order_by):
        df = pd.DataFrame({"y": y_true, "by": order_by}).sort_values("by", ascending=False, kind="stable")
        return (df["y"].cumsum() / df["y"].sum()).to_numpy()

    gains = pd.DataFrame({"truth": cumulative(y_true), "model": cumulative(y_pred)})
    raw = gains.apply(lambda x: 2 * x.sum() / gains.shape[0] - 1.0)
    return float(raw["model"] / raw["truth"])


def test_normalized_gini_is_1_for_the_perfect_order_about_0_for_noise_and_matches_pandas():
    assert normalized_gini(SPEND, SPEND) == pytest.approx(1.0)
    assert normalized_gini(SPEND, 2 * SPEND + 1) == pytest.approx(1.0)    # any increasing map
    assert abs(normalized_gini(SPEND, RNG.random(len(SPEND)))) < 0.05
    noisy = SPEND * RNG.lognormal(0, 1, len(SPEND)) + RNG.random(len(SPEND))
    assert normalized_gini(SPEND, noisy) == pytest.approx(_gini_as_lifetime_value_computes_it(SPEND, noisy), abs=1e-9)
    assert np.isnan(normalized_gini(np.zeros(10), np.arange(10)))


def test_spearman_matches_scipy_with_ties():
    pred = np.round(SPEND * RNG.lognormal(0, 0.5, len(SPEND)), -1)   # many ties on both sides
    assert spearman(SPEND, pred) == pytest.approx(stats.spearmanr(SPEND, pred).statistic, abs=1e-12)
    assert np.isnan(spearman(SPEND, np.ones(len(SPEND))))


def test_decile_mape_matches_a_qcut_computation():
    pred = SPEND * 0.8 + RNG.lognormal(1, 1, len(SPEND))   # distinct values: qcut's deciles are the same rows
    df = pd.DataFrame({"y": SPEND, "p": pred, "decile": pd.qcut(pred, 10, labels=False)})
    per = df.groupby("decile").agg(actual=("y", "mean"), predicted=("p", "mean"))
    per = per[per["actual"] > 0]
    expected = float((np.abs(per["predicted"] - per["actual"]) / per["actual"]).mean())
    assert decile_mape(SPEND, pred) == pytest.approx(expected, rel=1e-12)
    assert decile_mape(SPEND + 1.0, SPEND + 1.0) == pytest.approx(0.0)


def test_regression_metrics_carry_the_ranking_measures():
    m = regression_metrics(SPEND, SPEND)
    assert m["gini"] == pytest.approx(1.0) and m["spearman"] == pytest.approx(1.0)


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    x = RNG.normal(10.0, 2.0, 2000)
    y = x + RNG.normal(0.5, 0.1, 2000)   # paired with x: their difference is far tighter than either
    ci = bootstrap_intervals(lambda rows: {"x": x[rows].mean(), "diff": (y[rows] - x[rows]).mean()},
                             len(x), resamples=2000, seed=1)
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert ci["x"][0] == pytest.approx(x.mean() - half, abs=0.25 * half)
    assert ci["x"][1] == pytest.approx(x.mean() + half, abs=0.25 * half)
    d = y - x
    assert ci["diff"][1] - ci["diff"][0] == pytest.approx(2 * 1.96 * d.std() / np.sqrt(len(d)), rel=0.25)
