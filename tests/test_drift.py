"""Drift at scoring: training profiles in the spec, bin counts per batch, PSI per input column."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from retail_ann.drift import count_values, fit_profile, psi, summary
from retail_ann.preprocessing import FeatureSpec


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.lognormal(3, 1, n)
    spend[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"spend": spend, "visits": rng.poisson(4, n).astype(float),
                         "location": rng.choice(["DE", "FR", "IT", None], n, p=[.5, .3, .15, .05])})


def test_profile_shares_cover_every_row_and_the_training_rows_do_not_drift_from_themselves():
    train = frame(5000, 0)
    spec = FeatureSpec.fit(train, min_category_count=1)
    spec.profile = fit_profile(spec, train)
    for name, p in spec.profile.items():
        assert abs(sum(p["shares"]) - 1) < 1e-9, name
    assert len(spec.profile["spend"]["edges"]) == 9 and abs(spec.profile["spend"]["shares"][-1] - 0.1) < 0.02
    counts = count_values(spec, pa.Table.from_pandas(train))   # the Arrow path scoring uses
    s = summary(spec, counts, bound=0.25)
    assert all(c["psi"] < 1e-9 for c in s["columns"].values()) and s["drifted"] == []
    fresh = summary(spec, count_values(spec, pa.Table.from_pandas(frame(5000, 1))), bound=0.25)
    assert all(c["psi"] < 0.02 for c in fresh["columns"].values())   # another sample of the same shop


def test_one_shifted_column_and_only_it_passes_the_bound(caplog):
    train = frame(5000, 0)
    spec = FeatureSpec.fit(train, min_category_count=1)
    spec.profile = fit_profile(spec, train)
    scored = frame(4000, 2)
    scored["spend"] *= 3
    scored.loc[scored.index[:40], "location"] = "ES"   # a 1 % new level: the unknown bucket grows (10 % passes)
    s = summary(spec, count_values(spec, pa.Table.from_pandas(scored)), bound=0.25)
    assert s["drifted"] == ["spend"] and s["columns"]["spend"]["psi"] > 0.5
    assert 0.03 < s["columns"]["location"]["psi"] < 0.25 and s["columns"]["visits"]["psi"] < 0.02
    assert abs(s["columns"]["spend"]["missing_share"] - s["columns"]["spend"]["training_missing_share"]) < 0.02
    assert any("drift: 1 input column(s) past PSI 0.25" in r.message and "spend" in r.message for r in caplog.records)


def test_psi_is_zero_for_equal_shares_and_finite_for_an_empty_bin():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert 0 < psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]) < 10
    np.testing.assert_allclose(psi([0.6, 0.4], [0.4, 0.6]), 0.2 * np.log(1.5) * 2)


def test_the_drift_page_shows_the_worst_columns_bins_training_beside_scored():
    from retail_ann.drift import bin_labels, report_html

    train = frame(5000, 0)
    spec = FeatureSpec.fit(train, min_category_count=1)
    spec.profile = fit_profile(spec, train)
    scored = frame(4000, 2)
    scored["spend"] *= 3
    s = summary(spec, count_values(spec, pa.Table.from_pandas(scored)), bound=0.25)
    labels = bin_labels(spec, "spend")
    assert len(labels) == len(spec.profile["spend"]["shares"]) and labels[-1] == "missing"
    assert bin_labels(spec, "location") == ["DE", "FR", "IT", "__missing__", "(other)"]
    page = report_html(spec, s, "drift", shown=2)
    assert page.count("<svg") == 2 and page.index("<h2>spend: PSI") < page.index("<h2>", page.index("<h2>spend") + 1)
    assert "1 column(s) past it" in page and page.count("past the bound") == 1
