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
    common = ["--features", features, "--model", model, "--out", out, "--output-format", "delta", "--master", "local[2]",
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
    history = spark.sql(f"DESCRIBE HISTORY delta.`{out}`").orderBy("version").collect()
    result["history"] = [r["operation"] for r in history]
    result["metadata"] = [json.loads(r["userMetadata"]) for r in history]
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
    version = (trained_model["dir"] / "VERSION").read_text().strip()
    assert [m["model_version"] for m in result["metadata"]] == [version, version]
    assert result["metadata"][1]["as_of_dates"] == [second_date.isoformat()]
    assert (out / "_delta_log").is_dir()
    assert (out / f"{AS_OF_DATE}={second_date.isoformat()}" / "_manifest.json").is_file()


FEATURES_SCRIPT = textwrap.dedent("""
    import json, sys
    from pyspark.sql import SparkSession
    from retail_ann.cli import main
    raw, out, models, scores = sys.argv[1:5]
    spark_args = ["--master", "local[2]", "--conf", "spark.sql.shuffle.partitions=2", "--log-level", "WARNING"]
    features = ["features", "--transactions", f"{raw}/transactions", "--clickstream", f"{raw}/clickstream",
                "--customers", f"{raw}/customers", "--as-of", "2024-07-01", "--lookback-days", "180",
                "--horizon-days", "60", "--out", out, "--output-format", "delta", *spark_args]
    exits = [main(features)]
    spark = SparkSession.getActiveSession()
    first = spark.read.format("delta").load(out).count()
    exits.append(main(features))   # a rerun for the same date replaces it
    history = spark.sql(f"DESCRIBE HISTORY delta.`{out}`").orderBy("version").collect()
    exits.append(main(["train", "--features", out, "--input-version", "0", "--out", f"{models}/m", "--epochs", "1",
                       *spark_args]))
    exits.append(main(["score", "--features", out, "--input-format", "delta", "--model", f"{models}/m",
                       "--out", scores, *spark_args]))
    print(json.dumps({"exits": exits, "first": first, "after_rerun": spark.read.format("delta").load(out).count(),
                      "history": [r["operation"] for r in history],
                      "metadata": [json.loads(r["userMetadata"]) for r in history],
                      "scored": spark.read.parquet(scores).count()}))
""")


def test_delta_feature_tables_replace_a_date_in_one_commit_and_train_and_score_read_them(shop, tmp_path):
    out = tmp_path / "features"
    proc = subprocess.run([sys.executable, "-c", FEATURES_SCRIPT, str(shop["raw"]), str(out), str(tmp_path / "models"),
                           str(tmp_path / "scores")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["exits"] == [0, 0, 0, 0], proc.stderr[-3000:]
    assert r["first"] == r["after_rerun"] == r["scored"] == shop["manifest"]["rows"]   # live rows: one per customer
    assert r["history"] == ["WRITE", "WRITE"] and [m["as_of_date"] for m in r["metadata"]] == ["2024-07-01"] * 2
    manifest = json.loads((out / "as_of_date=2024-07-01" / "_manifest.json").read_text())
    assert manifest["rows"] == r["first"] and (out / "as_of_date=2024-07-01" / "_SUCCESS").exists()
