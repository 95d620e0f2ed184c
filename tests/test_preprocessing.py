"""FeatureSpec: fitted on training rows only, identical on pandas and Arrow, robust to bad values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from retail_ann.preprocessing import MISSING_LEVEL, UNKNOWN_LEVEL, FeatureSpec, column_types_of


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "spend": rng.lognormal(3, 1.2, n) * (rng.random(n) < 0.6),   # zero-inflated, heavy tail
        "visits": rng.integers(0, 20, n).astype(np.int64),
        "rate": rng.random(n),
        "age": pd.array(rng.integers(18, 80, n), dtype="Int64"),
        "gender": rng.choice(["f", "m", "x"], n, p=[0.48, 0.48, 0.04]),
        "region": rng.integers(1, 5, n),
        "weekend": rng.random(n) < 0.3,
    })


def _spec(df: pd.DataFrame, **kw) -> FeatureSpec:
    return FeatureSpec.fit(df, categorical=["region"], min_category_count=5, **kw)


def test_roles_log_rule_and_feature_names():
    df = _frame()
    spec = _spec(df)
    assert spec.input_columns == {"spend": "numeric", "visits": "numeric", "rate": "numeric", "age": "numeric",
                                  "gender": "categorical", "region": "categorical", "weekend": "boolean"}
    by_name = {f.name: f for f in spec.numeric}
    assert by_name["spend"].log and by_name["spend"].positive_indicator   # skewed and zero-inflated
    assert not by_name["rate"].log and not by_name["visits"].log          # roughly uniform
    assert by_name["spend"].skew > 1.0
    names = spec.feature_names
    assert names[:3] == ["spend", "spend>0", "visits"]
    # one column per level of at least min_category_count rows (x: 15 of 400), most frequent first,
    # then the unknown bucket
    assert [n for n in names if n.startswith("gender=")] == ["gender=f", "gender=m", "gender=x", f"gender={UNKNOWN_LEVEL}"]
    assert names[-1] == f"weekend={UNKNOWN_LEVEL}"
    x = spec.transform(df)
    assert x.dtype == np.float32 and x.shape == (len(df), spec.n_features)
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_statistics_come_from_the_training_rows_only():
    train = _frame(300)
    spec = _spec(train)
    before = spec.to_json()
    extreme = train.head(3).copy()
    extreme["rate"] = [50.0, -50.0, 0.5]
    extreme["visits"] = [10_000, -3, 5]
    extreme["spend"] = [1e300, -1e300, 0.0]   # finite, but beyond float32: saturates, is not "missing"
    x = spec.transform(extreme)
    assert spec.to_json() == before      # transforming never refits
    rate = spec.feature_names.index("rate")
    visits = spec.feature_names.index("visits")
    spend = spec.feature_names.index("spend")
    assert x[0, rate] == 1.0 and x[1, rate] == 0.0    # clipped to the training range
    assert x[0, visits] == 1.0 and x[1, visits] == 0.0
    assert x[0, spend] == 1.0 and x[1, spend] == 0.0 and x[2, spend] == 0.0
    f = next(f for f in spec.numeric if f.name == "rate")
    assert f.lo == pytest.approx(train["rate"].min()) and f.hi == pytest.approx(train["rate"].max())


def test_values_above_the_training_range_extrapolate_a_bounded_share_of_it():
    """With ``extrapolation`` e, a value above the training maximum maps past 1 on the same scale,
    saturating at 1 + e; below the minimum it still saturates at 0. A spec written before the
    option (no ``extrapolation`` among its options) keeps saturating at 1."""
    train = _frame(300)
    spec = _spec(train, extrapolation=0.5)
    f = {f.name: f for f in spec.numeric}
    rate, spend = spec.feature_names.index("rate"), spec.feature_names.index("spend")
    span = f["rate"].hi - f["rate"].lo
    beyond = train.head(4).copy()
    beyond["rate"] = [f["rate"].hi + 0.2 * span, f["rate"].hi + 5 * span, f["rate"].lo - span, 0.5]
    beyond["spend"] = [1e300, 0.0, 0.0, 0.0]
    x = FeatureSpec.from_json(spec.to_json()).transform(beyond)
    np.testing.assert_allclose(x[:, rate], [1.2, 1.5, 0.0, (0.5 - f["rate"].lo) / span], rtol=1e-5)
    assert x[0, spend] == 1.5
    old = FeatureSpec.from_json(spec.to_json())
    del old.options["extrapolation"]
    assert FeatureSpec.from_json(old.to_json()).transform(beyond)[:, rate].max() == 1.0


def test_missing_values_and_unseen_categories():
    train = _frame(500)
    train.loc[:99, "rate"] = np.nan             # 20 % missing -> indicator
    spec = _spec(train)
    rate = next(f for f in spec.numeric if f.name == "rate")
    assert rate.missing_indicator
    assert rate.impute == pytest.approx(float(train["rate"].median()))
    batch = pd.DataFrame({
        "spend": [np.inf, None, 5.0], "visits": [np.nan, 3, -np.inf], "rate": [None, 0.5, np.nan],
        "age": pd.array([None, 40, 30], dtype="Int64"), "gender": ["never-seen", None, "f"],
        "region": [99, 2, None], "weekend": [None, True, False],
    })
    x = spec.transform(batch)
    assert np.isfinite(x).all()
    names = spec.feature_names
    col = {n: x[:, i] for i, n in enumerate(names)}
    assert col["rate_missing"].tolist() == [1.0, 0.0, 1.0]
    assert col["gender=f"].tolist() == [0.0, 0.0, 1.0]
    assert col[f"gender={UNKNOWN_LEVEL}"].tolist() == [1.0, 1.0, 0.0]   # unseen, and missing (never seen in training)
    assert col[f"region={UNKNOWN_LEVEL}"].tolist() == [1.0, 0.0, 1.0]
    assert col["region=2"].tolist() == [0.0, 1.0, 0.0]
    # every categorical block is exactly one-hot
    for c in spec.categorical:
        block = [i for i, n in enumerate(names) if n.startswith(c.name + "=")]
        assert (x[:, block].sum(axis=1) == 1.0).all()
    # missing numeric values take the imputed value: same output as passing the median itself
    filled = batch.copy()
    filled["rate"] = [rate.impute, 0.5, rate.impute]
    assert np.array_equal(spec.transform(filled)[:, names.index("rate")], col["rate"])


def test_frequent_missing_category_is_its_own_level_and_rare_levels_fold():
    df = pd.DataFrame({"x": np.arange(100.0), "c": ["a"] * 60 + [None] * 30 + ["rare"] * 3 + ["b"] * 7})
    spec = FeatureSpec.fit(df, min_category_count=5)
    assert spec.categorical[0].levels == ["a", MISSING_LEVEL, "b"]
    x = spec.transform(pd.DataFrame({"x": [1.0, 2.0], "c": ["rare", None]}))
    names = spec.feature_names
    assert x[0, names.index(f"c={UNKNOWN_LEVEL}")] == 1.0
    assert x[1, names.index(f"c={MISSING_LEVEL}")] == 1.0


def test_pandas_and_arrow_batches_give_identical_arrays():
    df = _frame(1000, seed=3)
    spec = _spec(df)
    batch = _frame(777, seed=4)
    batch.loc[::7, "spend"] = np.nan
    batch.loc[::11, "age"] = pd.NA
    batch.loc[::13, "gender"] = None
    batch["weekend"] = batch["weekend"].astype(object)
    batch.loc[::17, "weekend"] = None
    expected = spec.transform(batch)
    assert pa.Table.from_pandas(batch, preserve_index=False).schema.field("weekend").type == pa.bool_()
    table = pa.Table.from_pandas(batch, preserve_index=False)
    assert np.array_equal(spec.transform(table), expected)
    assert np.array_equal(spec.transform(table.combine_chunks().to_batches()[0]), expected)
    chunked = pa.concat_tables([table.slice(0, 300), table.slice(300)])
    assert chunked["spend"].num_chunks == 2
    assert np.array_equal(spec.transform(chunked), expected)
    # other physical types for the same values: int32, float32, large_string, dictionary, string-coded ints
    alt = table.select(table.column_names)
    alt = alt.set_column(alt.schema.get_field_index("visits"), "visits", alt["visits"].cast(pa.int32()))
    alt = alt.set_column(alt.schema.get_field_index("gender"), "gender", alt["gender"].cast(pa.large_string()))
    alt = alt.set_column(alt.schema.get_field_index("region"), "region", alt["region"].cast(pa.string()))
    assert np.array_equal(spec.transform(alt), expected)
    dict_gender = alt.set_column(alt.schema.get_field_index("gender"), "gender",
                                 table["gender"].dictionary_encode())
    assert np.array_equal(spec.transform(dict_gender), expected)


def test_json_round_trip_and_boolean_text():
    df = _frame(300)
    spec = _spec(df)
    again = FeatureSpec.from_json(spec.to_json())
    assert again.to_dict() == spec.to_dict()
    assert np.array_equal(again.transform(df), spec.transform(df))
    text = df.copy()
    text["weekend"] = np.where(df["weekend"], "TRUE", "FALSE")
    assert np.array_equal(spec.transform(text), spec.transform(df))


def test_check_schema_reports_missing_and_uncastable_columns():
    spec = _spec(_frame())
    ok = {"spend": "double", "visits": "bigint", "rate": "float", "age": "int", "gender": "string",
          "region": "int", "weekend": "boolean", "extra": "string"}
    assert spec.check_schema(ok) == []
    bad = dict(ok, spend="string", gender="array<string>")
    del bad["rate"]
    problems = spec.check_schema(bad)
    assert any(p.startswith("1 of its 7 input columns missing (rate)") for p in problems)
    assert any(p.startswith("column spend is string") for p in problems)
    assert any(p.startswith("column gender is array<string>") for p in problems)
    table = pa.Table.from_pandas(_frame(10), preserve_index=False)
    assert spec.check_schema(column_types_of(table)) == []


def test_piecewise_linear_encoding_bins_from_training_quantiles():
    train = _frame(1000, seed=5)
    spec = _spec(train, ple_bins=4)
    assert FeatureSpec.from_json(spec.to_json()).to_dict() == spec.to_dict()
    rate = next(f for f in spec.numeric if f.name == "rate")
    assert len(rate.ple_edges) == 5 and rate.ple_edges == sorted(rate.ple_edges)
    names = spec.feature_names
    plain = _spec(train)
    assert [n for n in names if "#" not in n] == plain.feature_names   # PLE adds columns, changes none
    assert "rate#3" in names and "rate#4" not in names
    z = np.linspace(-0.5, 1.5, 201)  # raw rate values, below, within and beyond the training range
    x = spec.transform(pd.DataFrame({**{c: train[c].iloc[:201].to_numpy() for c in train.columns}, "rate": z}))
    cols = [names.index(f"rate#{k}") for k in range(4)]
    enc = x[:, cols]
    assert enc.min() >= 0.0 and enc.max() <= 1.0
    level = enc.sum(axis=1)
    assert (np.diff(level) >= 0).all() and level[0] == 0.0 and level[-1] == 4.0   # monotone, saturating
    # at most one bin is partly filled, and bins fill from the left
    assert (((enc > 0) & (enc < 1)).sum(axis=1) <= 1).all()
    assert all((np.diff(row) <= 0).all() for row in enc)
    # each training quartile lands about evenly: the mean level over training rows is near 2
    train_level = spec.transform(train)[:, cols].sum(axis=1)
    assert 1.8 < train_level.mean() < 2.2
    two_valued = FeatureSpec.fit(pd.DataFrame({"flag": np.tile([0.0, 1.0], 50), "r": np.linspace(0, 1, 100)}), ple_bins=4)
    assert [f.ple_edges != [] for f in two_valued.numeric] == [False, True]   # two values: no bins
    assert np.array_equal(spec.transform(pa.Table.from_pandas(train, preserve_index=False)), spec.transform(train))
