"""generate → features on a generated shop: shape, labels, leakage and learnable signal."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from retail_ann import features as fx
from retail_ann.cli import main
from retail_ann.config import FeaturesConfig, TrainConfig, parse_date
from retail_ann.io import partition_manifests
from retail_ann.pipeline import run_features
from retail_ann.training import label_windows
from retail_ann.schemas import AS_OF_DATE, CUSTOMER_ID, FUTURE_SPEND, SIGNUP_DATE, TS, WILL_PURCHASE
from tests.conftest import SHOP_AS_OF


def test_one_row_per_known_customer_with_visit_columns(spark, shop):
    table = spark.read.parquet(str(shop["features"]))
    n = table.count()
    assert n == table.select(CUSTOMER_ID).distinct().count() == shop["manifest"]["rows"]
    customers = spark.read.parquet(str(shop["raw"] / "customers"))
    assert 0.5 * customers.count() < n <= customers.count()
    for col in (fx.TOTAL_VISITS, fx.AVG_SESSION_DURATION_S, fx.AVG_TIME_PER_PAGE_S, fx.PRODUCT_VIEWS, fx.CART_ADDS):
        assert col in table.columns
    visitors = table.where(F.col(fx.TOTAL_VISITS) > 0)
    assert visitors.count() > 0.3 * n
    assert visitors.agg(F.min(fx.AVG_SESSION_DURATION_S)).first()[0] > 0
    assert table.where(F.col(FUTURE_SPEND) < 0).count() == 0
    assert table.where((F.col(WILL_PURCHASE) == 0) & (F.col(FUTURE_SPEND) > 0)).count() == 0


def test_purchase_rate_is_not_degenerate_and_features_carry_signal(spark, shop):
    pdf = spark.read.parquet(str(shop["features"])).toPandas()
    rate = pdf[WILL_PURCHASE].mean()
    assert 0.05 < rate < 0.6, rate
    cols = [fx.N_ORDERS, fx.DAYS_SINCE_LAST_ORDER, fx.TOTAL_VISITS, fx.DAYS_SINCE_LAST_VISIT, fx.CART_ADDS,
            fx.GROSS_SPEND, fx.VISITS_RECENT]
    x = np.log1p(pdf[cols].fillna(0).to_numpy(dtype=float))
    y = pdf[WILL_PURCHASE].to_numpy()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    p = LogisticRegression(max_iter=1000).fit(x_tr, y_tr).predict_proba(x_te)[:, 1]
    auc = roc_auc_score(y_te, p)
    assert auc > 0.7, auc          # the majority class scores 0.5
    assert auc < 0.99, auc         # and the task is not trivial


def test_removing_events_after_cutoff_changes_no_feature(spark, shop, tmp_path):
    cutoff = F.col(TS) < F.lit(dt.datetime.fromisoformat(SHOP_AS_OF))
    trimmed = tmp_path / "raw"
    for name in ("transactions", "clickstream"):
        spark.read.parquet(str(shop["raw"] / name)).where(cutoff).write.parquet(str(trimmed / name))
    (spark.read.parquet(str(shop["raw"] / "customers")).where(F.col(SIGNUP_DATE) < F.lit(parse_date(SHOP_AS_OF)))
     .write.parquet(str(trimmed / "customers")))   # and nobody who signs up at or after the cutoff
    run_features(spark, FeaturesConfig(lookback_days=180, horizon_days=60), parse_date(SHOP_AS_OF),
                 str(trimmed / "transactions"), str(tmp_path / "features"),
                 clickstream=str(trimmed / "clickstream"), customers=str(trimmed / "customers"))
    full = _by_customer(spark.read.parquet(str(shop["features"])).drop(WILL_PURCHASE, FUTURE_SPEND))
    cut = _by_customer(spark.read.parquet(str(tmp_path / "features")).drop(WILL_PURCHASE, FUTURE_SPEND))
    assert list(full.columns) == list(cut.columns) and len(full) == len(cut)
    floats = [c for c in full.columns if full[c].dtype.kind == "f"]
    # sums over differently laid-out files may differ in the last bits, nothing more
    pd.testing.assert_frame_equal(full[floats], cut[floats], check_exact=False, rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(full.drop(columns=floats), cut.drop(columns=floats))


def test_manifest_records_data_ranges_and_whether_labels_are_complete(spark, shop, tmp_path, capsys, caplog):
    manifest = shop["manifest"]
    assert manifest["labels_complete"] is True and manifest["window"]["label_end"] == "2024-08-30"
    data = manifest["data"]
    assert set(data) == {"transactions", "clickstream", "customers"}
    tx = spark.read.parquet(str(shop["raw"] / "transactions")).agg(F.min(TS), F.max(TS), F.count("*")).first()
    assert data["transactions"] == {"rows": tx[2], "data_start": tx[0].isoformat(), "data_end": tx[1].isoformat()}
    assert data["transactions"]["data_end"] >= "2024-08-29"
    assert data["customers"]["data_end"] < "2024-09-07"             # signup dates

    # a 90-day horizon runs past the last generated day: recorded, warned about, refused by train
    out = tmp_path / "features"
    late = run_features(spark, FeaturesConfig(lookback_days=180, horizon_days=90), parse_date(SHOP_AS_OF),
                        str(shop["raw"] / "transactions"), str(out))
    assert late["labels_complete"] is False and late["window"]["label_end"] == "2024-09-29"
    assert any("labels incomplete" in r.message and "2024-09-29" in r.message for r in caplog.records)
    capsys.readouterr()
    assert main(["train", "--features", str(out), "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("retail-ann train: error: labels incomplete for as_of_date 2024-07-01")
    assert "--allow-incomplete-labels" in err and not (tmp_path / "model").exists()
    manifests = partition_manifests(spark, str(out), AS_OF_DATE)
    assert label_windows(manifests, TrainConfig(allow_incomplete_labels=True)) == {"2024-07-01": {
        "label_end": "2024-09-29", "data_end": data["transactions"]["data_end"], "labels_complete": False}}
    one = partition_manifests(spark, str(out / "as_of_date=2024-07-01"), AS_OF_DATE)   # one partition's directory
    assert list(one) == ["2024-07-01"]


def _by_customer(df) -> pd.DataFrame:
    return df.toPandas().sort_values(CUSTOMER_ID, ignore_index=True)
