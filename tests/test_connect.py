"""Scoring from a Spark Connect session: a local Connect server in a child process (a process can
hold only one kind of session), compared with classic scoring of the same table."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from retail_ann.config import ScoreConfig
from retail_ann.schemas import CUSTOMER_ID, PREDICTED_SPEND, PURCHASE_PROBABILITY
from retail_ann.scoring import score_table

CONNECT_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession
    from retail_ann.config import ScoreConfig
    from retail_ann.scoring import score_table
    features, model, out = sys.argv[1:4]
    spark = (SparkSession.builder.remote("local[2]")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
             .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    assert type(spark).__module__.startswith("pyspark.sql.connect"), type(spark)
    print(json.dumps(score_table(spark, features, model, out, ScoreConfig())))
    spark.stop()
""")


def test_scoring_through_spark_connect_matches_classic(spark, shop, trained_model, tmp_path):
    connect_out, classic_out = tmp_path / "connect", tmp_path / "classic"
    proc = subprocess.run(
        [sys.executable, "-c", CONNECT_SCRIPT, str(shop["features"]), str(trained_model["dir"]), str(connect_out)],
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr and "grpc" in proc.stderr:
        pytest.fail("pyspark[connect] dependencies missing: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads(proc.stdout.strip().splitlines()[-1])
    assert manifest["rows_out"] == manifest["rows_in"] > 0
    score_table(spark, str(shop["features"]), str(trained_model["dir"]), str(classic_out), ScoreConfig())
    cols = [CUSTOMER_ID, PURCHASE_PROBABILITY, PREDICTED_SPEND]
    connect = spark.read.parquet(str(connect_out)).select(cols).toPandas().sort_values(CUSTOMER_ID)
    classic = spark.read.parquet(str(classic_out)).select(cols).toPandas().sort_values(CUSTOMER_ID)
    assert connect[CUSTOMER_ID].tolist() == classic[CUSTOMER_ID].tolist()
    assert (connect[PURCHASE_PROBABILITY].to_numpy() == classic[PURCHASE_PROBABILITY].to_numpy()).all()
    assert (connect[PREDICTED_SPEND].to_numpy() == classic[PREDICTED_SPEND].to_numpy()).all()
