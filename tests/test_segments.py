"""Test metrics by segment: which rows fall in which segment, and the figures of each."""
from __future__ import annotations

import numpy as np
import pandas as pd

from retail_ann.segments import MIN_ROWS, masks, segment_metrics


def test_segments_split_the_rows_by_orders_age_band_location_and_named_columns():
    test = pd.DataFrame({"n_orders": [0, 0, 3, 1, None, 2], "age": [19, 30, None, 70, 49, 50],
                         "location": ["DE", "FR", "DE", None, "DE", "IT"], "channel": list("aabbbc")})
    got = masks(test, ["channel"])
    assert set(got) == {"customer", "age", "location", "channel"}
    assert got["customer"]["new (no order in the lookback)"].tolist() == [True, True, False, False, True, False]
    assert {k: v.tolist() for k, v in got["age"].items() if v.any()} == {
        "0-24": [True, False, False, False, False, False], "25-34": [False, True, False, False, False, False],
        "35-49": [False, False, False, False, True, False], "50-64": [False] * 5 + [True],
        "65+": [False, False, False, True, False, False], "unknown": [False, False, True, False, False, False]}
    assert got["location"]["DE"].sum() == 3 and got["location"]["(missing)"].sum() == 1
    for groups in got.values():   # every dimension puts each row in exactly one segment
        assert (np.sum(list(groups.values()), axis=0) == 1).all()


def test_small_segments_are_left_out_and_each_gets_its_own_figures():
    rng = np.random.default_rng(0)
    n = 400
    orders = rng.poisson(1, n)
    y = (rng.random(n) < np.where(orders > 0, 0.5, 0.1)).astype(int)
    p = np.clip(np.where(orders > 0, 0.45, 0.15) + rng.normal(0, 0.05, n), 0, 1)
    segs = masks(pd.DataFrame({"n_orders": orders, "location": ["XX"] * (MIN_ROWS - 1) + ["YY"] * (n - MIN_ROWS + 1)}))
    rows = segment_metrics(segs, y, p)
    names = [(r["dimension"], r["segment"]) for r in rows]
    assert ("location", "XX") not in names and ("location", "YY") in names
    new, returning = (next(r for r in rows if r["segment"] == s) for s in ("new (no order in the lookback)", "returning"))
    assert new["rows"] + returning["rows"] == n and new["positive_rate"] < returning["positive_rate"]
    assert abs(new["mean_probability"] - 0.15) < 0.02 and new["brier"] < 0.2 and "r2" not in new
