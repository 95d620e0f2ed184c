"""Calibrating the purchase probabilities on the validation rows: chosen by cross-validated Brier,
stored as parameters or breakpoints, applied in numpy."""
from __future__ import annotations

import numpy as np

from retail_ann.calibration import ISOTONIC_MIN_ROWS, apply, fit_calibration


def overconfident(n: int, seed: int):
    """Labels drawn from a true probability, and a network's probability that is too sure:
    sigmoid(2 logit(p) + 1)."""
    rng = np.random.default_rng(seed)
    true = 1 / (1 + np.exp(-rng.normal(-1, 1.2, n)))
    y = (rng.random(n) < true).astype(int)
    z = np.log(true) - np.log1p(-true)
    return y, 1 / (1 + np.exp(-(2 * z + 1))), true


def test_an_overconfident_network_is_calibrated_and_fresh_rows_get_a_lower_brier():
    y, p, _ = overconfident(3000, 0)
    fitted = fit_calibration(y, p)
    assert fitted["method"] in ("platt", "isotonic") and set(fitted["brier_cv"]) == {"none", "platt", "isotonic"}
    assert fitted["brier_cv"][fitted["method"]] < fitted["brier_cv"]["none"]
    y2, p2, true2 = overconfident(20000, 1)
    brier = lambda q: np.mean((q - y2) ** 2)   # noqa: E731
    assert brier(apply(fitted, p2)) < brier(p2) - 0.005
    assert brier(apply(fitted, p2)) < brier(true2) + 0.002   # close to the truth's own
    platt = fit_calibration(y, p, method="platt")
    np.testing.assert_allclose([platt["a"], platt["b"]], [0.5, -0.5], atol=0.12)   # undoes 2 z + 1


def test_calibrated_probabilities_keep_the_order_and_stay_within_0_and_1():
    y, p, _ = overconfident(3000, 2)
    grid = np.linspace(0, 1, 1001)
    for method in ("platt", "isotonic"):
        q = apply(fit_calibration(y, p, method=method), grid)
        assert (np.diff(q) >= 0).all() and q.min() >= 0 and q.max() <= 1, method
    assert (np.diff(apply(fit_calibration(y, p, method="platt"), grid)) > 0).all()   # strictly: ROC-AUC kept


def test_isotonic_competes_only_with_enough_rows_and_too_few_buyers_mean_none():
    y, p, _ = overconfident(ISOTONIC_MIN_ROWS - 1, 3)
    assert set(fit_calibration(y, p)["brier_cv"]) == {"none", "platt"}
    few = np.zeros(500, int)
    few[:3] = 1
    assert fit_calibration(few, np.linspace(0.01, 0.9, 500))["method"] == "none"
    assert fit_calibration(y, p, method="none") == {"method": "none", "why": "calibration: none in the config"}
    np.testing.assert_array_equal(apply({"method": "none"}, p), p)
    np.testing.assert_array_equal(apply(None, p), p)


def test_a_well_calibrated_network_keeps_its_probabilities():
    """A gain within the noise of the validation rows is no reason for a map: none is kept (with
    these seeds Platt's cross-validated Brier is a hair lower than none's)."""
    for seed in (7, 8):
        rng = np.random.default_rng(seed)
        p = rng.uniform(0.02, 0.9, 3000)
        y = (rng.random(3000) < p).astype(int)
        fitted = fit_calibration(y, p)
        assert fitted["brier_cv"]["platt"] < fitted["brier_cv"]["none"]
        assert fitted["method"] == "none"
