"""The data lake on object storage: every path of generate → features → train → score on s3a://,
as Parquet and as Delta,
against a local S3-compatible server (moto, started here on 127.0.0.1). hadoop-aws comes from Maven
Central through spark.jars.packages (cached in ~/.ivy2.5.2 after the first run); S3A is set the
Spark way (--conf spark.hadoop.fs.s3a.*) and credentials come from the AWS environment variables."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import json, sys
    from retail_ann import io
    from retail_ann.cli import main

    port = sys.argv[1]
    s3 = ["--conf", f"spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:{port}",
          "--conf", "spark.hadoop.fs.s3a.path.style.access=true",
          "--conf", "spark.hadoop.fs.s3a.endpoint.region=us-east-1",
          "--conf", "spark.hadoop.fs.s3a.connection.ssl.enabled=false",
          "--master", "local[2]", "--log-level", "WARNING"]
    lake = "s3a://lake"
    steps = [
        ["generate", "--out", f"{lake}/raw", "--customers", "400", "--days", "150"],
        ["features", "--transactions", f"{lake}/raw/transactions", "--clickstream", f"{lake}/raw/clickstream",
         "--customers", f"{lake}/raw/customers", "--as-of", "2024-04-01", "--lookback-days", "60",
         "--horizon-days", "30", "--out", f"{lake}/features"],
        ["train", "--features", f"{lake}/features", "--out", f"{lake}/models/m1", "--epochs", "2"],
        ["score", "--features", f"{lake}/features", "--model", f"{lake}/models/m1", "--out", f"{lake}/predictions"],
        ["score", "--features", f"{lake}/features", "--model", f"{lake}/models/m1", "--out", f"{lake}/predictions"],
    ]
    delta_features = [*steps[1][:-1], f"{lake}/delta/features", "--output-format", "delta"]
    delta_score = ["score", "--features", f"{lake}/delta/features", "--model", f"{lake}/models/m1",
                   "--out", f"{lake}/delta/predictions", "--output-format", "delta"]
    steps += [delta_features, delta_features, delta_score, delta_score]   # each twice: a rerun replaces its date
    # one process runs every job here, and its first session fixes the jars: start it with Delta's
    # and hadoop-aws (a job run alone gets what its own paths and formats need)
    from retail_ann.spark import build_session, session_conf
    spark = build_session("lake-test", master="local[2]", conf=session_conf(
        [lake], True, dict(s3[i + 1].split("=", 1) for i in range(0, 8, 2))))
    exits = [main([*step, *s3]) for step in steps]
    features = spark.read.parquet(f"{lake}/features")
    preds = spark.read.parquet(f"{lake}/predictions")
    part = f"{lake}/predictions/as_of_date=2024-04-01"
    print(json.dumps({
        "exits": exits, "features": features.count(), "predictions": preds.count(),
        "ids": preds.select("customer_id").distinct().count(),
        "model_files": sorted(f.rsplit("/", 1)[-1] for f in io.data_files(spark, f"{lake}/models/m1")),
        "version": io.read_text(spark, f"{lake}/models/m1/VERSION").strip(),
        "versions_scored": sorted({r[0] for r in preds.select("model_version").distinct().collect()}),
        "manifest_rows": json.loads(io.read_text(spark, f"{part}/_manifest.json"))["rows_out"],
        "success": io.path_exists(spark, f"{part}/_SUCCESS"),
        "committers": [json.loads(io.read_text(spark, f"{lake}/{t}/as_of_date=2024-04-01/_manifest.json"))["committer"]
                       for t in ("features", "predictions")],
        "quarantine": io.path_exists(spark, f"{lake}/features/_rejected/transactions_duplicates/as_of_date=2024-04-01"),
        "staging_left": io.data_files(spark, f"{lake}/predictions/_publish"),
        "delta_features": spark.read.format("delta").load(f"{lake}/delta/features").count(),
        "delta_predictions": spark.read.format("delta").load(f"{lake}/delta/predictions").count(),
        "delta_history": {t: [json.loads(r["userMetadata"]) for r in
                              spark.sql(f"DESCRIBE HISTORY delta.`{lake}/delta/{t}`").orderBy("version").collect()]
                          for t in ("features", "predictions")},
    }))
""")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def s3_server():
    """moto in server mode on 127.0.0.1, with a bucket ``lake``; stopped after the module."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket="lake")
        yield port, env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_generate_features_train_score_with_every_path_on_s3(s3_server):
    port, aws = s3_server
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(port)], capture_output=True, text=True, timeout=1200,
                          env={**os.environ, **aws})
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["exits"] == [0] * 9, proc.stderr[-4000:]
    assert r["features"] > 200 and r["predictions"] == r["ids"] == r["features"] == r["manifest_rows"]
    assert {"VERSION", "CHECKSUMS.json", "feature_spec.json", "weights_purchase.npz", "model_purchase.keras",
            "report.html"} <= set(r["model_files"])
    assert r["versions_scored"] == [r["version"]]
    assert r["success"] and r["quarantine"] and r["staging_left"] == []
    assert r["committers"] == ["magic", "magic"]   # Parquet reached S3 through the magic committer
    assert "testing" not in proc.stderr   # the credentials are never printed
    # Delta on S3: a rerun adds a commit, never live rows; the commits say what they hold
    assert r["delta_features"] == r["delta_predictions"] == r["features"]
    assert [m["as_of_date"] for m in r["delta_history"]["features"]] == ["2024-04-01"] * 2
    assert [m["model_version"] for m in r["delta_history"]["predictions"]] == [r["version"]] * 2
