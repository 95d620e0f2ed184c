"""The features job end to end through the CLI: files in, partitioned Parquet and manifest out,
and one clear line with exit code 2 for bad input."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from retail_ann.cli import main
from retail_ann.schemas import AS_OF_DATE, CUSTOMER_ID
from retail_ann.spark import session_conf

TX_CSV = """customer_id,order_id,ts,product_category,quantity,unit_price
c1,o1,2024-02-10 10:00:00,books,2,10.0
c1,o2,2024-03-05 10:00:00,books,1,7.5
c2,o3,2024-02-20 10:00:00,toys,1,30
c2,o4,2024-02-21 10:00:00,toys,1,oops
,o5,2024-02-22 10:00:00,toys,1,3
"""
CLICKS_JSON = "\n".join([
    '{"customer_id": "c1", "session_id": "s1", "ts": "2024-02-10 09:58:00", "page_type": "product", '
    '"product_category": "books", "duration_s": 60}',
    '{"customer_id": "c3", "session_id": "s2", "ts": "2024-02-11 09:58:00", "page_type": "home", "duration_s": 5}',
])


@pytest.fixture()
def raw(tmp_path):
    (tmp_path / "tx.csv").write_text(TX_CSV)
    (tmp_path / "clicks.jsonl").write_text(CLICKS_JSON + "\n")
    return tmp_path


def features_args(raw, out, *extra):
    return ["features", "--transactions", str(raw / "tx.csv"), "--clickstream", str(raw / "clicks.jsonl"),
            "--as-of", "2024-03-01", "--lookback-days", "60", "--horizon-days", "30", "--out", str(out), *extra]


def test_features_job_writes_partition_manifest_and_quarantine(spark, raw, tmp_path):
    out = tmp_path / "features"
    assert main(features_args(raw, out)) == 0
    table = spark.read.parquet(str(out))
    rows = {r[CUSTOMER_ID]: r for r in table.collect()}
    assert set(rows) == {"c1", "c2", "c3"}
    assert rows["c1"]["will_purchase"] == 1 and rows["c1"]["future_spend"] == pytest.approx(7.5)
    assert str(rows["c1"][AS_OF_DATE]) == "2024-03-01"
    manifest = json.loads((out / "as_of_date=2024-03-01" / "_manifest.json").read_text())
    assert manifest["rows"] == 3
    assert manifest["rejected"]["transactions"] == 2
    assert manifest["categories"] == ["books", "toys"]  # one valid window line each: ties by name
    assert set(manifest["seconds"]) == {"validate", "aggregate", "write"}
    rejected = spark.read.parquet(str(out / "_rejected" / "transactions" / "as_of_date=2024-03-01"))
    assert sorted(r.reject_reason for r in rejected.collect()) == ["missing customer_id", "unparseable unit_price"]
    # a rerun for another date leaves this one alone; a rerun for this date replaces it
    assert main(features_args(raw, out, "--as-of", "2024-03-15")) == 0
    assert main(features_args(raw, out)) == 0
    dates = sorted(str(r[0]) for r in spark.read.parquet(str(out)).select(AS_OF_DATE).distinct().collect())
    assert dates == ["2024-03-01", "2024-03-15"]
    assert spark.read.parquet(str(out)).where(f"{AS_OF_DATE} = '2024-03-01'").count() == 3


@pytest.mark.parametrize("change, message", [
    (["--transactions", "/nonexistent/tx.parquet"], "input not found: /nonexistent/tx.parquet"),
    (["--as-of", "2024-13-01"], "--as-of: '2024-13-01' is not a date"),
    (["--as-of", "2020-01-01"], "no customer is known before 2020-01-01"),
    (["--lookback-days", "0"], "--lookback-days must be positive (lookback_days in the config or --set)"),
    (["--as-of", "20240701"], "--as-of: '20240701' is not a date in YYYY-MM-DD form"),
    (["--as-of", "2024-W27-1"], "--as-of: '2024-W27-1' is not a date in YYYY-MM-DD form"),
    (["--as-of", "9999-12-31"], "--as-of 9999-12-31 with --lookback-days 60 and --horizon-days 30 runs past the calendar"),
])
def test_bad_input_exits_2_with_one_line(raw, tmp_path, capsys, change, message):
    args = features_args(raw, tmp_path / "out")
    for flag, value in zip(change[::2], change[1::2]):
        args[args.index(flag) + 1] = value
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("retail-ann features: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in err


def test_an_out_that_is_a_file_or_inside_an_input_is_refused_before_spark_starts(raw, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    (raw / "clicks").mkdir()
    (raw / "clicks" / "part.jsonl").write_text(CLICKS_JSON + "\n")
    for out, clicks, message in ((tmp_path / "taken", raw / "clicks.jsonl", "is a file; give a directory"),
                                 (raw / "clicks" / "features", raw / "clicks", "is inside the clickstream input")):
        args = features_args(raw, out)
        args[args.index("--clickstream") + 1] = str(clicks)
        started = time.time()
        assert main(args) == 2
        assert message in capsys.readouterr().err.strip().splitlines()[-1]
        assert time.time() - started < 2   # no session, no work
    assert not (raw / "clicks" / "features").exists()
    assert main(["score", "--features", str(raw / "clicks"), "--model", str(tmp_path), "--out",
                 str(raw / "clicks" / "scores")]) == 2
    assert "is inside the features input" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_line_repeated_whole_is_quarantined_once_not_counted_twice(spark, raw, tmp_path):
    lines = TX_CSV.splitlines()
    (raw / "dup.csv").write_text("\n".join(lines + [lines[1], lines[1]]) + "\n")   # c1's first order, twice more
    args = features_args(raw, tmp_path / "out")
    args[args.index("--transactions") + 1] = str(raw / "dup.csv")
    assert main(args) == 0
    manifest = json.loads((tmp_path / "out" / "as_of_date=2024-03-01" / "_manifest.json").read_text())
    assert manifest["rejected"]["transactions_duplicates"] == 2
    c1 = spark.read.parquet(str(tmp_path / "out")).where(f"{CUSTOMER_ID} = 'c1'").first()
    assert c1["gross_spend"] == pytest.approx(20.0) and c1["n_orders"] == 1
    dups = spark.read.parquet(str(tmp_path / "out" / "_rejected" / "transactions_duplicates" / "as_of_date=2024-03-01"))
    assert [r.reject_reason for r in dups.collect()] == ["duplicate row", "duplicate row"]


def test_missing_column_is_named(raw, tmp_path, capsys):
    (raw / "bad.csv").write_text("customer_id,order_id,when,quantity,unit_price\nc1,o1,2024-01-01,1,2\n")
    args = features_args(raw, tmp_path / "out")
    args[args.index("--transactions") + 1] = str(raw / "bad.csv")
    assert main(args) == 2
    assert "transactions: missing required column(s) ts" in capsys.readouterr().err


def test_all_rows_invalid_is_bad_input(raw, tmp_path, capsys):
    (raw / "junk.csv").write_text("customer_id,order_id,ts,quantity,unit_price\nc1,o1,never,1,2\nc2,o2,never,1,2\n")
    args = features_args(raw, tmp_path / "out")
    args[args.index("--transactions") + 1] = str(raw / "junk.csv")
    assert main(args) == 2
    assert "no valid rows; all 2 row(s) rejected, most often: unparseable ts (2)" in capsys.readouterr().err


def test_scheme_less_paths_follow_the_default_filesystem(spark):
    from retail_ann.io import is_local

    assert is_local("/data/x", spark)  # the test session's default filesystem is file:///
    assert is_local("file:///data/x", spark) and not is_local("s3a://bucket/x", spark)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    conf.set("fs.defaultFS", "hdfs://namenode:8020")
    try:
        assert not is_local("/data/x", spark)
    finally:
        conf.set("fs.defaultFS", "file:///")


def test_demo_runs_the_whole_pipeline_and_prints_its_figures(spark, tmp_path, capsys):
    """The README's first command, small: generate -> features -> train (with report) -> score."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--customers", "600", "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("retail-ann demo: ") and "retail-ann demo: retail-ann" not in printed and "purchase ann" in printed and "spend    baseline_ridge" in printed
    assert sorted(p.name for p in (out / "raw").iterdir() if not p.name.startswith(("_", "."))) == \
        ["clickstream", "customers", "transactions"]
    assert (out / "model" / "report.html").exists() and (out / "model" / "VERSION").exists()
    features = spark.read.parquet(str(out / "features"))
    predictions = spark.read.parquet(str(out / "predictions"))
    n = features.count()
    assert n > 400 and predictions.count() == n
    assert predictions.select(CUSTOMER_ID).distinct().count() == n
    assert (out / "predictions" / f"{AS_OF_DATE}=2024-11-01" / "_SUCCESS").exists()
    version = (out / "model" / "VERSION").read_text().strip()
    assert {r[0] for r in predictions.select("model_version").distinct().collect()} == {version}


def test_an_analysis_error_in_our_own_code_is_exit_1_and_an_unreadable_input_file_exit_2(spark, tmp_path, capsys):
    """A scheduler retries exit 1 and blames the input for exit 2: Spark's analysis errors that reach
    the CLI come from our code (the user's are turned into input errors where they arise)."""
    import argparse

    from retail_ann.cli import _run

    args = argparse.Namespace(command="score", conf=[], json=False)
    assert _run(lambda a: spark.range(1).select("no_such_column").collect(), args) == 1
    assert "failed: AnalysisException" in capsys.readouterr().err
    tx = tmp_path / "tx"
    spark.createDataFrame([("c1", "o1", 1, 2.0)], "customer_id string, order_id string, quantity int, unit_price double") \
        .selectExpr("*", "timestamp'2024-02-10 10:00:00' as ts").write.parquet(str(tx))
    (tx / "part-99999-truncated.parquet").write_bytes(b"PAR1 cut off here")
    assert main(["features", "--transactions", str(tx), "--as-of", "2024-03-01", "--out", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("retail-ann features: error: cannot read input file ")
    assert "part-99999-truncated.parquet" in last and "is not a Parquet file" in last


def test_odd_category_names_fold_into_one_and_never_stop_the_job(spark, raw, tmp_path):
    """Books beside books, two non-ASCII names that slug alike, a 100 KB name: one run, distinct columns."""
    long = "x" * 100_000
    tx = "\n".join(["customer_id,order_id,ts,product_category,quantity,unit_price",
                    "c1,o1,2024-02-10 10:00:00,Books,1,10.0", "c1,o2,2024-02-11 10:00:00, books ,1,5.0",
                    "c2,o3,2024-02-12 10:00:00,électronique,1,7.0", "c2,o4,2024-02-13 10:00:00,ëlectronique,1,8.0",
                    f"c3,o5,2024-02-14 10:00:00,{long},1,9.0"]) + "\n"
    (raw / "odd.csv").write_text(tx)
    args = features_args(raw, tmp_path / "out")
    args[args.index("--transactions") + 1] = str(raw / "odd.csv")
    assert main(args) == 0
    table = spark.read.parquet(str(tmp_path / "out"))
    spend = [c for c in table.columns if c.startswith("spend_cat_") and c != "spend_cat_other_categories"]
    assert len(spend) == 4 and max(len(c) for c in spend) <= len("spend_cat_") + 40
    c1 = table.where(f"{CUSTOMER_ID} = 'c1'").first()
    assert c1["spend_cat_books"] == pytest.approx(15.0)


@pytest.mark.slow
def test_sigterm_stops_spark_and_says_one_line_with_exit_143(shop, tmp_path):
    """What Airflow sends on a timeout, to the whole process group (the JVM too): no stack traces."""
    import os
    import signal
    import subprocess
    import sys

    args = [sys.executable, "-m", "retail_ann.cli", "features", "--transactions", str(shop["raw"] / "transactions"),
            "--clickstream", str(shop["raw"] / "clickstream"), "--as-of", "2024-07-01", "--out", str(tmp_path / "out"),
            "--master", "local[1]"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for line in proc.stderr:   # signal once the job is at work inside Spark
        seen.append(line)
        if "retail_ann.spark: spark session" in line:
            break
    os.killpg(proc.pid, signal.SIGTERM)
    seen += proc.stderr.readlines()
    assert proc.wait(timeout=120) == 143
    assert seen[-1].startswith("retail-ann features: stopped by SIGTERM")
    assert not [line for line in seen if "Traceback" in line or line.startswith("\tat ")], "".join(seen)
    assert not (tmp_path / "out" / "as_of_date=2024-07-01").exists()


JVM_ARGS = """
import json, sys
from retail_ann.spark import build_session
spark = build_session("jvm-args", master="local[1]", conf=json.loads(sys.argv[2]), job=sys.argv[1])
print(json.dumps(list(spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
                      .getInputArguments())))
"""


@pytest.mark.parametrize("job, conf, c1_only", [
    ("score", {}, True),                                            # its JVM does no per-row work
    ("features", {}, False),                                        # C2 pays for itself on the aggregation
    ("score", {"spark.driver.extraJavaOptions": "-Dx=1"}, False),   # the user's setting replaces ours
])
def test_the_score_jvm_compiles_with_c1_only_unless_told_otherwise(job, conf, c1_only):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", JVM_ARGS, job, json.dumps(conf)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    args = json.loads(out.splitlines()[-1])
    assert ("-XX:TieredStopAtLevel=1" in args) == c1_only
    assert any(a.startswith("-Dlog4j2.configurationFile=") for a in args)   # our log set-up either way
    assert ("-Dx=1" in args) == bool(conf)


def test_session_for_s3a_paths_gets_the_magic_committer_and_keeps_the_users_jars():
    conf = session_conf(["/local/in", "s3a://lake/out"], False,
                        {"spark.jars.packages": "org.example:extra:1.0", "spark.jars.excludes": "org.example:unwanted",
                         "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000"})
    assert conf["spark.hadoop.fs.s3a.committer.name"] == "magic"
    assert conf["spark.sql.sources.commitProtocolClass"].endswith("cloud.PathOutputCommitProtocol")
    assert conf["spark.jars.packages"].split(",")[-1] == "org.example:extra:1.0"
    assert "org.apache.spark:spark-hadoop-cloud_2.13:4.0.1" in conf["spark.jars.packages"].split(",")
    assert conf["spark.jars.excludes"].split(",")[-1] == "org.example:unwanted"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    local = session_conf(["/local/in", "/local/out"], False, {})
    assert not any(k.startswith(("spark.jars", "spark.hadoop.fs.s3a", "spark.sql.sources")) for k in local)


def test_many_cutoffs_in_one_job_then_train_out_of_time_on_the_latest(spark, shop, tmp_path, capsys):
    """features --as-of A,B,... writes one partition per date; train --holdout-as-of D tests on D and
    trains only on earlier partitions whose label window ended by D (06-15's runs to 07-15: left out)."""
    raw, out = shop["raw"], tmp_path / "features"
    dates = ["2024-04-01", "2024-05-01", "2024-06-15", "2024-07-01"]
    assert main(["features", "--transactions", str(raw / "transactions"), "--customers", str(raw / "customers"),
                 "--as-of", ",".join(reversed(dates)), "--lookback-days", "60", "--horizon-days", "30",
                 "--out", str(out), "--log-level", "WARNING"]) == 0
    manifests = {d: json.loads((out / f"{AS_OF_DATE}={d}" / "_manifest.json").read_text()) for d in dates}
    assert all(m[AS_OF_DATE] == d and m["rows"] > 0 for d, m in manifests.items())
    model = tmp_path / "model"
    assert main(["train", "--features", str(out), "--out", str(model), "--holdout-as-of", "2024-07-01",
                 "--epochs", "2", "--log-level", "WARNING"]) == 0
    data = json.loads((model / "metrics.json").read_text())["data"]
    assert data["holdout_as_of"] == "2024-07-01" and data["train_as_of_dates"] == ["2024-04-01", "2024-05-01"]
    assert data["left_out_as_of_dates"] == ["2024-06-15"]
    assert data["rows_test"] == manifests["2024-07-01"]["rows"]
    assert data["rows_fit"] + data["rows_validation"] == manifests["2024-04-01"]["rows"] + manifests["2024-05-01"]["rows"]
    capsys.readouterr()
    assert main(["train", "--features", str(out), "--out", str(model), "--holdout-as-of", "2024-04-01"]) == 2
    assert "no earlier partition" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["features", "--transactons", "t", "--as-of", "2024-03-01", "--out", "o"],
     "unrecognized argument --transactons (did you mean --transactions?)"),
    (["train", "--features", "f", "--out", "o", "--epoch", "3"], "unrecognized argument --epoch (did you mean --epochs?)"),
    (["score", "--features=f", "--model", "m", "--out", "o", "--bogus"], "unrecognized argument --bogus"),
])
def test_a_misspelled_or_abbreviated_flag_is_named_before_anything_else(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(message) and "required" not in err[-1]


def test_any_setting_can_be_set_from_the_command_line(spark, raw, tmp_path, capsys):
    """recent_days has no flag of its own: --set reaches it (a value as YAML reads it), the flags win
    over --set, and an unknown key is named with the closest one."""
    out = tmp_path / "features"
    assert main(features_args(raw, out, "--set", "recent_days=7", "--set", "lookback_days=10",
                              "--log-level", "WARNING")) == 0
    manifest = json.loads((out / f"{AS_OF_DATE}=2024-03-01" / "_manifest.json").read_text())
    assert manifest["config"]["recent_days"] == 7 and manifest["config"]["lookback_days"] == 60   # the flag wins
    capsys.readouterr()
    assert main(features_args(raw, out, "--set", "recent_day=7")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--set recent_day: no such setting (did you mean recent_days?)" in err


def test_a_missing_local_input_or_model_is_said_before_spark_starts(shop, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("HADOOP_CONF_DIR", None)
    cases = [(["score", "--features", str(shop["features"]), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "p")],
              f"model directory not found: {tmp_path / 'model'} (train writes it"),
             (["features", "--transactions", str(tmp_path / "none"), "--as-of", "2024-03-01", "--out", str(tmp_path / "f")],
              f"input not found: {tmp_path / 'none'}")]
    for argv, message in cases:
        started = time.time()
        run = subprocess.run([sys.executable, "-m", "retail_ann.cli", *argv], env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 2 and time.time() - started < 15
        lines = run.stderr.strip().splitlines()
        assert lines[-1].startswith(f"retail-ann {argv[0]}: error: {message}")
        assert not any("WARN" in line or "Spark" in line for line in lines), lines


def test_every_command_says_what_it_did_on_stdout_or_as_json(spark, raw, tmp_path, capsys):
    """--log-level WARNING leaves a success with its one summary line on stdout; --json prints the
    manifest instead, one object a line, and nothing else on stdout."""
    out = tmp_path / "features"
    assert main(features_args(raw, out, "--log-level", "WARNING")) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("retail-ann features: as of 2024-03-01: wrote 3 customers")
    assert f"to {out}/{AS_OF_DATE}=2024-03-01; rejected 2 input rows (" in captured.out
    assert main(features_args(raw, out, "--log-level", "WARNING", "--json")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    manifest = json.loads(lines[0])
    assert len(lines) == 1 and manifest[AS_OF_DATE] == "2024-03-01" and manifest["rows"] == 3


def test_rejects_are_written_only_when_counted_and_a_rerun_replaces_them(spark, raw, tmp_path):
    """One pass counts each table's rejects: none, nothing written; a rerun whose input was fixed
    leaves no stale rejects of the first run behind."""
    out = tmp_path / "features"
    assert main(features_args(raw, out, "--log-level", "WARNING")) == 0
    rejected = out / "_rejected"
    assert spark.read.parquet(str(rejected / "transactions" / f"{AS_OF_DATE}=2024-03-01")).count() == 2
    assert not (rejected / "clickstream").exists()
    (raw / "tx.csv").write_text("\n".join(line for line in TX_CSV.splitlines() if "oops" not in line
                                           and not line.startswith(",")) + "\n")
    assert main(features_args(raw, out, "--log-level", "WARNING")) == 0
    assert spark.read.parquet(str(rejected / "transactions" / f"{AS_OF_DATE}=2024-03-01")).count() == 0
    manifest = json.loads((out / f"{AS_OF_DATE}=2024-03-01" / "_manifest.json").read_text())
    assert manifest["rejected"]["transactions"] == 0 and manifest["data"]["transactions"]["rows"] == 3


def test_every_help_example_parses():
    """The examples under each command's --help are commands that parse (they cannot rot unseen)."""
    import shlex

    from retail_ann.cli import EXAMPLES, build_parser

    parser = build_parser()
    for command, examples in EXAMPLES.items():
        assert len(examples) >= 2
        for example in examples:
            args = parser.parse_args([command, *shlex.split(example)])
            assert args.command == command
