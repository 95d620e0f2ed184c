"""Scoring into a Delta Lake table through the CLI (``--format delta``): the Delta jars resolve from
Maven Central at session start, so the job runs in a child process with its own session (a
process's first SparkSession fixes its jars)."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap

import pytest
from pyspark.sql import functions as F

from retail_ann.schemas import AS_OF_DATE

pytestmark = pytest.mark.slow

DELTA_SCRIPT = textwrap.dedent("""
    import json, sys
    from pyspark.sql import SparkSession, functions as F
    from retail_ann.cli import main
    from retail_ann.schemas import AS_OF_DATE, CUSTOMER_ID, SCORED_AT
    features, model, out, second = sys.argv[1:5]
    common = ["--features", features, "--model", model, "--out", out, "--format", "delta", "--master", "local[2]",
              "--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.ui.enabled=false", "--log-level", "WARNING"]

    def snapshot(spark):
        rows = (spark.read.format("delta").load(out).groupBy(AS_OF_DATE)
                .agg(F.count("*").alias("rows"), F.countDistinct(CUSTOMER_ID).alias("ids"),
                     F.min(SCORED_AT).alias("first"), F.max(SCORED_AT).alias("last")).collect())
        return {str(r[AS_OF_DATE]): {"rows": r["rows"], "ids": r["ids"], "scored_at": [str(r["first"]), str(r["last"])]}
                for r in rows}

    result = {"first_exit": main(["score", *common])}
    spark = SparkSession.getActiveSession()
    result["after_first"] = snapshot(spark)
    result["rerun_exit"] = main(["score", *common, "--as-of", second])
    result["after_rerun"] = snapshot(spark)
    result["history"] = [r["operation"] for r in spark.sql(f"DESCRIBE HISTORY delta.`{out}`").collect()]
    print(json.dumps(result))
""")


def test_delta_output_is_partitioned_and_a_rerun_replaces_one_date(spark, shop, trained_model, tmp_path):
    features = spark.read.parquet(str(shop["features"]))
    first_date = features.select(AS_OF_DATE).first()[0]
    second_date = first_date + dt.timedelta(days=30)
    two_dates = tmp_path / "features"
    (features.unionByName(features.withColumn(AS_OF_DATE, F.lit(second_date)))
     .write.partitionBy(AS_OF_DATE).parquet(str(two_dates)))
    n = features.count()
    out = tmp_path / "predictions"
    proc = subprocess.run(
        [sys.executable, "-c", DELTA_SCRIPT, str(two_dates), str(trained_model["dir"]), str(out), second_date.isoformat()],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["first_exit"] == 0 and result["rerun_exit"] == 0, proc.stderr[-3000:]
    first, rerun = result["after_first"], result["after_rerun"]
    assert set(first) == set(rerun) == {first_date.isoformat(), second_date.isoformat()}
    for date in first:
        assert first[date]["rows"] == first[date]["ids"] == rerun[date]["rows"] == rerun[date]["ids"] == n
    # the rerun for the second date replaced it (new scored_at) and left the first date's rows as they were
    assert rerun[first_date.isoformat()]["scored_at"] == first[first_date.isoformat()]["scored_at"]
    assert rerun[second_date.isoformat()]["scored_at"][0] > first[second_date.isoformat()]["scored_at"][1]
    assert result["history"] == ["WRITE", "WRITE"]
    assert (out / "_delta_log").is_dir()
    assert (out / f"{AS_OF_DATE}={second_date.isoformat()}" / "_manifest.json").is_file()
