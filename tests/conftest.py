"""One session-scoped local SparkSession for the whole suite."""
from __future__ import annotations

import pytest

from retail_ann.spark import build_session


@pytest.fixture(scope="session")
def spark():
    session = build_session(
        "retail-ann-tests",
        master="local[2]",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
        },
    )
    yield session
    session.stop()


SHOP_AS_OF = "2024-07-01"


@pytest.fixture(scope="session")
def shop(spark, tmp_path_factory):
    """A small generated shop and its feature table, built once through the job functions and
    shared by the pipeline, training and scoring tests."""
    from retail_ann.config import FeaturesConfig, GenerateConfig, parse_date
    from retail_ann.pipeline import run_features, run_generate

    root = tmp_path_factory.mktemp("shop")
    raw = root / "raw"
    # 250 days: to 2024-09-06, past the label window [2024-07-01, 2024-08-30)
    run_generate(spark, GenerateConfig(customers=2000, days=250, start="2024-01-01", seed=7), str(raw))
    manifest = run_features(
        spark, FeaturesConfig(lookback_days=180, horizon_days=60), parse_date(SHOP_AS_OF),
        str(raw / "transactions"), str(root / "features"),
        clickstream=str(raw / "clickstream"), customers=str(raw / "customers"),
    )
    return {"root": root, "raw": raw, "features": root / "features", "manifest": manifest}


@pytest.fixture(scope="session")
def trained_model(spark, shop, tmp_path_factory):
    """A quickly trained artifact (few epochs, no report) on the shared shop's feature table."""
    from retail_ann.config import TrainConfig
    from retail_ann.training import train_table

    out = tmp_path_factory.mktemp("model") / "model"
    metrics = train_table(spark, str(shop["features"]), str(out),
                          TrainConfig(epochs=4, batch_size=64, patience=2, report=False, seed=3))
    return {"dir": out, "metrics": metrics}
