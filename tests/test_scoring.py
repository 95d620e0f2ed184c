"""Scoring a feature table with a trained artifact on Spark executors."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from retail_ann.cli import main
from retail_ann.config import ScoreConfig
from retail_ann.errors import InputError
from retail_ann.file_scoring import COMMITTER, FAIL_ATTEMPT_ENV, footer_counts
from retail_ann.scoring import score_batches, score_dataframe, score_table
from retail_ann.schemas import (
    AS_OF_DATE, CUSTOMER_ID, MODEL_VERSION, PREDICTED_SPEND, PURCHASE_PROBABILITY, SCORED_AT, PREDICTED_PURCHASE,
)
from retail_ann.artifact import load_artifact

VALUE_COLS = [CUSTOMER_ID, PURCHASE_PROBABILITY, PREDICTED_PURCHASE, PREDICTED_SPEND, MODEL_VERSION, AS_OF_DATE]


@pytest.fixture(scope="module")
def scored(spark, shop, trained_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("predictions") / "predictions"
    manifest = score_table(spark, str(shop["features"]), str(trained_model["dir"]), str(out), ScoreConfig())
    return {"out": out, "manifest": manifest}


def test_every_customer_scored_exactly_once(spark, shop, scored, trained_model):
    features = spark.read.parquet(str(shop["features"]))
    preds = spark.read.parquet(str(scored["out"]))
    assert preds.count() == features.count() == scored["manifest"]["rows_out"] == scored["manifest"]["rows_in"]
    assert preds.select(CUSTOMER_ID).distinct().count() == preds.count()
    assert preds.join(features, CUSTOMER_ID, "left_anti").count() == 0
    stats = preds.agg(F.min(PURCHASE_PROBABILITY), F.max(PURCHASE_PROBABILITY), F.min(PREDICTED_SPEND),
                      *[F.sum(F.col(c).isNull().cast("int")) for c in VALUE_COLS + [SCORED_AT]]).first()
    assert 0.0 <= stats[0] <= stats[1] <= 1.0
    assert stats[2] >= 0.0
    assert all(n == 0 for n in stats[3:])
    assert {r[0] for r in preds.select(MODEL_VERSION).distinct().collect()} == {scored["manifest"]["model_version"]}
    assert (scored["out"] / "as_of_date=2024-07-01" / "_SUCCESS").exists()
    assert scored["manifest"]["committer"] == COMMITTER   # a feature table of ours: tasks wrote the files
    # what the probabilities refer to, by what rule, and where everything is
    m = scored["manifest"]
    assert m["threshold"] == load_artifact(trained_model["dir"]).threshold
    assert m["label_windows"] == {"2024-07-01": {"label_end": shop["manifest"]["window"]["label_end"],
                                                 "horizon_days": shop["manifest"]["config"]["horizon_days"]}}
    assert all(Path(m[k]).is_absolute() for k in ("features", "model_dir", "out"))
    # Parquet's standard microsecond timestamps, not Spark's legacy INT96 (which pandas reads as naive nanoseconds)

    part = next((scored["out"] / "as_of_date=2024-07-01").glob("part-*.parquet"))
    assert str(pq.read_schema(part).field(SCORED_AT).type) == "timestamp[us, tz=UTC]"


def test_file_tasks_score_exactly_as_map_in_arrow_does(spark, shop, trained_model, scored, tmp_path):
    """The file-task path (the default for a feature table of ours) and Spark's mapInArrow path
    write the same rows, types and values (only the scoring time differs) and the same counts."""
    slow_out = tmp_path / "slow"
    slow = score_table(spark, str(shop["features"]), str(trained_model["dir"]), str(slow_out),
                       ScoreConfig(file_tasks=False))
    assert slow["committer"] == "file" and scored["manifest"]["committer"] == COMMITTER
    fast_df = spark.read.parquet(str(scored["out"])).drop(SCORED_AT)
    slow_df = spark.read.parquet(str(slow_out)).drop(SCORED_AT)
    assert fast_df.schema == slow_df.schema
    assert fast_df.count() == slow_df.count() == slow["rows_out"]
    assert fast_df.exceptAll(slow_df).count() == 0 and slow_df.exceptAll(fast_df).count() == 0
    for key in ("rows_in", "rows_out", "rows_rejected", "imputed", "keys", "as_of_dates"):
        assert scored["manifest"].get(key) == slow.get(key), key


def test_a_vouched_feature_table_is_scored_by_its_file_tasks_alone(spark, shop, trained_model, tmp_path):
    """On the file-task path the rows are counted from the Parquet footers, before and after the
    tasks: the Spark jobs are the tasks' own and Spark's read of one footer for the schema."""
    sc = spark.sparkContext
    sc.setJobGroup("score-file-tasks", "score a vouched feature table")
    try:
        manifest = score_table(spark, str(shop["features"]), str(trained_model["dir"]), str(tmp_path / "preds"),
                               ScoreConfig())
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert manifest["committer"] == COMMITTER and manifest["rows_out"] == shop["manifest"]["rows"]
    assert len(sc.statusTracker().getJobIdsForGroup("score-file-tasks")) == 2


@pytest.mark.parametrize("blank", [None, "   "])
def test_a_blank_id_written_into_a_vouched_table_is_quarantined_not_scored(spark, shop, trained_model, tmp_path,
                                                                          blank):
    """The footers' statistics show the blank id (a null count, or a smallest id of spaces): Spark
    counts the rows then, and the row is rejected as from any other table."""
    table = tmp_path / "features"
    shutil.copytree(shop["features"], table)
    part = table / f"{AS_OF_DATE}={shop['manifest'][AS_OF_DATE]}"
    files = sorted(part.glob("*.parquet"))
    first = pq.read_table(files[0])
    ids = first.column(CUSTOMER_ID).to_pylist()
    ids[0] = blank
    pq.write_table(first.set_column(first.schema.get_field_index(CUSTOMER_ID), CUSTOMER_ID, pa.array(ids)), files[0])
    (part / f".{files[0].name}.crc").unlink()   # Hadoop's checksum of the file as Spark wrote it
    manifest = score_table(spark, str(table), str(trained_model["dir"]), str(tmp_path / "preds"), ScoreConfig())
    assert manifest["rows_rejected"] == 1 and manifest["rows_in"] == manifest["rows_out"] == shop["manifest"]["rows"] - 1
    assert manifest["keys"] == "checked" and manifest["committer"] == "file"


def test_footer_counts_are_given_only_where_the_statistics_rule_out_a_blank_id(tmp_path):
    def files(ids, **options):
        path = tmp_path / f"f{len(list(tmp_path.iterdir()))}.parquet"
        pq.write_table(pa.table({CUSTOMER_ID: ids, "x": list(range(len(ids)))}), path, row_group_size=2, **options)
        return {"2024-07-01": [str(path)]}

    assert footer_counts(files(["c1", "c2", "c3"]), CUSTOMER_ID) == {"2024-07-01": 3}
    assert footer_counts(files(["  c1", "c2"]), CUSTOMER_ID) == {"2024-07-01": 2}   # spaces, then an id
    assert footer_counts(files([7, 8, 9]), CUSTOMER_ID) == {"2024-07-01": 3}         # numbers: nulls only
    assert footer_counts(files(pa.array([], pa.string())), CUSTOMER_ID) == {}
    for ids in (["c1", None, "c3"], ["c1", "c2", ""], ["c1", "c2", "  "], ["\tc1", "c2"], [7, None]):
        assert footer_counts(files(ids), CUSTOMER_ID) is None, ids
    assert footer_counts(files(["c1", "c2"], write_statistics=False), CUSTOMER_ID) is None
    assert footer_counts(files(["c1", "c2"]), "no_such_column") is None


def test_a_retried_file_task_leaves_one_copy_of_its_rows(shop, trained_model, tmp_path):
    """Each task's first attempt fails after writing its file; Spark retries it (local[2,2]); only
    the file of the attempt that succeeded is published."""
    out = tmp_path / "preds"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), FAIL_ATTEMPT_ENV: "1"}
    run = subprocess.run([sys.executable, "-m", "retail_ann.cli", "score", "--features", str(shop["features"]),
                          "--model", str(trained_model["dir"]), "--out", str(out), "--master", "local[2,2]",
                          "--log-level", "WARNING"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    part = out / f"{AS_OF_DATE}={shop['manifest'][AS_OF_DATE]}"
    table = pq.read_table(part)
    assert table.num_rows == shop["manifest"]["rows"] == len(set(table.column(CUSTOMER_ID).to_pylist()))
    assert all("-a1-" in f.name for f in part.glob("*.parquet"))   # attempt 1 of each task, none of attempt 0


def test_decision_uses_the_stored_threshold(spark, scored, trained_model):
    threshold = load_artifact(trained_model["dir"]).threshold
    preds = spark.read.parquet(str(scored["out"]))
    wrong = preds.where((F.col(PURCHASE_PROBABILITY) >= threshold) != (F.col(PREDICTED_PURCHASE) == 1)).count()
    assert wrong == 0


def test_rerun_replaces_only_its_partition_with_identical_values(spark, shop, trained_model, tmp_path):
    out = tmp_path / "preds"
    features = str(shop["features"])
    score_table(spark, features, str(trained_model["dir"]), str(out), ScoreConfig())
    other = tmp_path / "other_date"
    spark.read.parquet(features).withColumn(AS_OF_DATE, F.lit(dt.date(2024, 8, 1))).write.parquet(str(other))
    score_table(spark, str(other), str(trained_model["dir"]), str(out), ScoreConfig())
    first = sorted(spark.read.parquet(str(out)).select(VALUE_COLS).collect())
    score_table(spark, features, str(trained_model["dir"]), str(out), ScoreConfig())
    again = spark.read.parquet(str(out))
    assert again.count() == len(first) == 2 * spark.read.parquet(features).count()
    assert sorted(again.select(VALUE_COLS).collect()) == first


def test_missing_model_column_is_rejected_before_writing(spark, shop, trained_model, tmp_path, capsys):
    spec_cols = list(load_artifact(trained_model["dir"]).spec.input_columns)
    dropped = spec_cols[0]
    broken = tmp_path / "broken"
    spark.read.parquet(str(shop["features"])).drop(dropped).write.parquet(str(broken))
    out = tmp_path / "preds"
    code = main(["score", "--features", str(broken), "--model", str(trained_model["dir"]), "--out", str(out)])
    assert code == 2
    assert f"1 of its {len(spec_cols)} input columns missing ({dropped})" in capsys.readouterr().err
    assert not out.exists()
    # a wrong table: the first few missing columns and how many, not a line of all of them
    code = main(["score", "--features", str(shop["raw"] / "customers"), "--model", str(trained_model["dir"]),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and len(err) < 400 and "input columns missing (" in err and ", ...)" in err


def test_numpy_and_keras_engines_agree(spark, shop, trained_model):
    artifact = load_artifact(trained_model["dir"])
    df = spark.read.parquet(str(shop["features"])).limit(300)
    cols = [CUSTOMER_ID, PURCHASE_PROBABILITY, PREDICTED_SPEND]
    by_engine = {
        engine: score_dataframe(spark, df, artifact, engine=engine).select(cols).toPandas()
        .sort_values(CUSTOMER_ID).reset_index(drop=True)
        for engine in ("numpy", "keras")
    }
    assert len(by_engine["numpy"]) == 300
    np.testing.assert_allclose(by_engine["numpy"][PURCHASE_PROBABILITY], by_engine["keras"][PURCHASE_PROBABILITY],
                               atol=1e-5)
    np.testing.assert_allclose(by_engine["numpy"][PREDICTED_SPEND], by_engine["keras"][PREDICTED_SPEND],
                               rtol=1e-4, atol=1e-4)


def test_keras_engine_pins_tensorflow_to_one_thread_per_pool(trained_model):
    code = ("import tensorflow as tf\n"
            "from retail_ann.artifact import load_artifact\n"
            "from retail_ann.scoring import _keras_network\n"
            f"_keras_network(load_artifact({str(trained_model['dir'])!r}), 'purchase')\n"
            "print(tf.config.threading.get_intra_op_parallelism_threads(),"
            " tf.config.threading.get_inter_op_parallelism_threads())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_NUM_", "OMP_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["1", "1"]


def test_numpy_engine_runs_on_executors_without_tensorflow(spark, shop, trained_model):
    from functools import partial

    from pyspark.sql.pandas.types import to_arrow_schema

    def _without_tensorflow(batches, **kwargs):
        """The library's executor-side scorer, in a Spark worker where TensorFlow cannot be imported.
        Nested, so cloudpickle ships it by value to workers that cannot import this test module."""
        saved = {name: sys.modules.get(name) for name in ("tensorflow", "keras")}
        for name in saved:
            sys.modules[name] = None  # `import tensorflow` now raises ImportError in this worker
        try:
            yield from score_batches(batches, **kwargs)
        finally:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module

    artifact = load_artifact(trained_model["dir"])
    df = spark.read.parquet(str(shop["features"]))
    reference = score_dataframe(spark, df, artifact)
    fn = partial(_without_tensorflow, shipped=artifact, id_col=CUSTOMER_ID, as_of=None,
                 scored_at=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), engine="numpy",
                 schema=to_arrow_schema(reference.schema))
    blocked = df.select(CUSTOMER_ID, AS_OF_DATE, *artifact.spec.input_columns).mapInArrow(fn, reference.schema)
    assert blocked.count() == df.count()
    with pytest.raises(Exception, match="(?s)ImportError|ModuleNotFoundError|import of tensorflow"):
        keras_fn = partial(_without_tensorflow, shipped=load_artifact(trained_model["dir"]), id_col=CUSTOMER_ID,
                           as_of=None, scored_at=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), engine="keras",
                           schema=to_arrow_schema(reference.schema))
        df.select(CUSTOMER_ID, AS_OF_DATE, *artifact.spec.input_columns).mapInArrow(
            keras_fn, reference.schema).count()


def test_table_without_as_of_needs_the_flag(spark, shop, trained_model):
    artifact = load_artifact(trained_model["dir"])
    df = spark.read.parquet(str(shop["features"])).drop(AS_OF_DATE)
    with pytest.raises(InputError, match="pass --as-of"):
        score_dataframe(spark, df, artifact)
    preds = score_dataframe(spark, df, artifact, as_of=dt.date(2024, 9, 1))
    assert {r[0] for r in preds.select(AS_OF_DATE).distinct().collect()} == {dt.date(2024, 9, 1)}


def test_rows_without_id_or_date_are_quarantined_and_text_dates_are_read(spark, shop, trained_model, tmp_path):
    """A CSV-style export: as_of_date as text, a few rows without an id or with a date that does not
    parse. The others are scored; the rejects land in _rejected with their reason and count, and a
    clean rerun replaces them."""
    features = spark.read.parquet(str(shop["features"]))
    n = features.count()
    ids = [r[0] for r in features.select(CUSTOMER_ID).orderBy(CUSTOMER_ID).limit(5).collect()]
    messy = (features
             .withColumn(AS_OF_DATE, F.when(F.col(CUSTOMER_ID) == ids[0], F.lit("01/07/2024"))
                         .otherwise(F.col(AS_OF_DATE).cast("string")))
             .withColumn(CUSTOMER_ID, F.when(F.col(CUSTOMER_ID).isin(*ids[1:3]), F.lit(None))
                         .when(F.col(CUSTOMER_ID) == ids[3], F.lit("  ")).otherwise(F.col(CUSTOMER_ID))))
    path, out = tmp_path / "messy", tmp_path / "preds"
    messy.write.parquet(str(path))
    manifest = score_table(spark, str(path), str(trained_model["dir"]), str(out), ScoreConfig())
    assert manifest["rows_in"] == manifest["rows_out"] == n - 4 and manifest["rows_rejected"] == 4
    assert manifest["as_of_dates"] == ["2024-07-01"]
    rejected = spark.read.parquet(manifest["rejected_to"])
    reasons = {r[AS_OF_DATE]: r["reject_reason"] for r in rejected.collect() if r[CUSTOMER_ID] == ids[0]}
    assert reasons == {"01/07/2024": "missing or unparseable as_of_date"}
    assert rejected.where(F.col("reject_reason") == "missing customer_id").count() == 3
    assert spark.read.parquet(str(out)).where(F.col(CUSTOMER_ID).isNull() | (F.trim(CUSTOMER_ID) == "")).count() == 0
    manifest = score_table(spark, str(shop["features"]), str(trained_model["dir"]), str(out), ScoreConfig())
    assert manifest["rows_rejected"] == 0 and spark.read.parquet(str(out / "_rejected" / "features")).count() == 0


def test_malformed_csv_lines_are_rejected_not_scored(spark, tmp_path):
    """A feature table exported as CSV, with a line that has one field too many: it is rejected with
    its text, and the reader's _corrupt_record column never reaches the scorer."""
    from retail_ann.inputs import read_table
    from retail_ann.schemas import CORRUPT_RECORD
    from retail_ann.scoring import split_scorable

    bad = "c2,2024-07-01,3,7"
    path = tmp_path / "features.csv"
    path.write_text("\n".join([f"{CUSTOMER_ID},{AS_OF_DATE},visits", "c1,2024-07-01,2", bad, "c3,2024-07-01,5"]) + "\n")
    valid, rejected = split_scorable(read_table(spark, str(path)), CUSTOMER_ID, None)
    assert valid.columns == [CUSTOMER_ID, AS_OF_DATE, "visits"]
    assert sorted(r[CUSTOMER_ID] for r in valid.collect()) == ["c1", "c3"]
    assert [(r[CUSTOMER_ID], r[CORRUPT_RECORD], r["reject_reason"]) for r in rejected.collect()] == [
        ("c2", bad, "malformed record")]


def test_broken_model_files_are_input_errors(spark, shop, trained_model, tmp_path):

    model = tmp_path / "model"
    shutil.copytree(trained_model["dir"], model)
    df = spark.read.parquet(str(shop["features"]))
    (model / "model_purchase.keras").unlink()
    with pytest.raises(InputError, match="keras engine needs model_purchase.keras"):
        score_dataframe(spark, df, load_artifact(model), engine="keras")
    weights = model / "weights_purchase.npz"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match="weights_purchase.npz is not a valid weights file"):
        load_artifact(model)


def test_the_keras_engine_without_its_files_stops_score_before_any_spark_job(spark, shop, trained_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_model["dir"], model)
    (model / "model_spend.keras").unlink()
    sc, out = spark.sparkContext, tmp_path / "preds"
    sc.setJobGroup("score-keras-missing", "score with a keras file missing")
    try:
        with pytest.raises(InputError, match="keras engine needs model_spend.keras"):
            score_table(spark, str(shop["features"]), str(model), str(out), ScoreConfig(engine="keras"))
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    # the one job is Spark's read of a footer for the table's schema: nothing counted, nothing written
    assert len(sc.statusTracker().getJobIdsForGroup("score-keras-missing")) == 1 and not out.exists()


def test_repeated_keys_stop_the_job_before_writing(spark, shop, trained_model, tmp_path):
    features = spark.read.parquet(str(shop["features"]))
    twice = features.unionByName(features.limit(2))
    path, out = tmp_path / "twice", tmp_path / "preds"
    twice.write.parquet(str(path))
    with pytest.raises(InputError, match="2 customer_id value\\(s\\) occur more than once for one as_of_date"):
        score_table(spark, str(path), str(trained_model["dir"]), str(out), ScoreConfig())
    assert not out.exists()
    trusted = score_table(spark, str(path), str(trained_model["dir"]), str(tmp_path / "trusted"),
                          ScoreConfig(unique_ids=False))
    assert trusted["rows_in"] == trusted["rows_out"] == features.count() + 2
    other_date = features.limit(2).withColumn(AS_OF_DATE, F.lit(dt.date(2024, 8, 1)))
    features.unionByName(other_date).write.parquet(str(tmp_path / "two_dates"))
    manifest = score_table(spark, str(tmp_path / "two_dates"), str(trained_model["dir"]), str(out), ScoreConfig())
    assert manifest["rows_in"] == features.count() + 2
    assert manifest["as_of_dates"] == ["2024-07-01", "2024-08-01"] and manifest["keys"] == "checked"


def test_a_feature_table_vouches_for_its_keys_until_rows_are_added_to_it(spark, shop, trained_model, tmp_path):
    """Features writes one row per customer and says how many in each partition's manifest: score
    trusts that (no shuffle of the keys) while the partition holds that many rows, and checks the
    keys again once rows were added behind the manifest's back."""
    table = tmp_path / "features"
    shutil.copytree(shop["features"], table)
    manifest = score_table(spark, str(table), str(trained_model["dir"]), str(tmp_path / "p1"), ScoreConfig())
    assert manifest["keys"] == "unique by the features manifests"
    part = table / f"{AS_OF_DATE}={shop['manifest'][AS_OF_DATE]}"
    spark.read.parquet(str(part)).limit(3).write.mode("append").parquet(str(part))   # the same keys again
    with pytest.raises(InputError, match="3 customer_id value\\(s\\) occur more than once"):
        score_table(spark, str(table), str(trained_model["dir"]), str(tmp_path / "p2"), ScoreConfig())


def test_a_keras_file_copied_over_another_is_refused_and_impossible_outputs_fail_the_batch(trained_model, tmp_path):

    from retail_ann.scoring import check_predictions

    copy = tmp_path / "model"
    shutil.copytree(trained_model["dir"], copy)
    assert {"model_purchase.keras", "weights_spend.npz", "feature_spec.json"} <= load_artifact(str(copy)).checked
    shutil.copy(copy / "model_spend.keras", copy / "model_purchase.keras")   # VERSION does not cover .keras
    with pytest.raises(InputError, match="model_purchase.keras is changed since training"):
        load_artifact(str(copy))
    with pytest.raises(ValueError, match="1 purchase probabilities outside \\[0, 1\\] or not finite \\(e.g. 1.8"):
        check_predictions({PURCHASE_PROBABILITY: np.array([0.2, 1.8])}, str(copy))
    with pytest.raises(ValueError, match="non-finite or negative spend"):
        check_predictions({PREDICTED_SPEND: np.array([1.0, np.nan])}, str(copy))
    check_predictions({PURCHASE_PROBABILITY: np.array([0.0, 1.0]), PREDICTED_SPEND: np.array([0.0, 3.5])}, str(copy))


def test_the_values_scoring_imputes_are_counted_in_the_manifest(spark, shop, trained_model, tmp_path):
    """NaN and ±inf in a feature are imputed like a missing value: counted per column, by the
    scoring pass itself (an accumulator over its Arrow batches), not silently."""
    from retail_ann.features import AVG_ORDER_VALUE, GROSS_SPEND

    df = spark.read.parquet(str(shop["features"]))
    n = df.count()
    nulls = df.where(F.col(AVG_ORDER_VALUE).isNull()).count()    # customers without orders
    h = F.abs(F.xxhash64(CUSTOMER_ID)) % 10
    odd = df.withColumn(GROSS_SPEND, F.when(h == 0, F.lit(float("nan"))).when(h == 1, F.lit(float("inf")))
                        .when(h == 2, F.lit(float("-inf"))).otherwise(F.col(GROSS_SPEND)))
    expected = odd.where(F.isnan(GROSS_SPEND) | (F.abs(GROSS_SPEND) == float("inf"))).count()
    assert 0.2 * n < expected < 0.4 * n
    path = tmp_path / "odd"
    odd.write.partitionBy(AS_OF_DATE).parquet(str(path))
    manifest = score_table(spark, str(path), str(trained_model["dir"]), str(tmp_path / "out"),
                           ScoreConfig(unique_ids=False))
    assert manifest["imputed"]["non_finite"] == {GROSS_SPEND: expected}
    assert manifest["imputed"]["nulls"].get(AVG_ORDER_VALUE) == nulls > 0


def test_keras_networks_are_cached_per_worker_in_a_bounded_lru(trained_model):
    import dataclasses

    from retail_ann import scoring

    artifact = load_artifact(trained_model["dir"])
    scoring._keras_models.clear()
    first = scoring._keras_network(artifact, "purchase")
    assert scoring._keras_network(artifact, "purchase") is first                 # loaded once
    for v in range(scoring.KERAS_CACHE_SIZE):   # other model versions push the first one out
        scoring._keras_network(dataclasses.replace(artifact, version=f"v{v}"), "purchase")
    assert len(scoring._keras_models) == scoring.KERAS_CACHE_SIZE
    assert (artifact.path, artifact.version, "purchase") not in scoring._keras_models


def test_reason_codes_come_with_the_same_predictions_on_both_paths(spark, shop, trained_model, scored, tmp_path):
    """--explain 3: three feature table columns per row, contributions in decreasing order, the
    predictions unchanged, and the file-task and mapInArrow paths agree to the bit; more reasons
    than input columns are refused before any work."""
    from retail_ann.schemas import reason_columns

    artifact = load_artifact(trained_model["dir"])
    runs = {}
    for file_tasks in (True, False):
        out = tmp_path / f"explained_{file_tasks}"
        manifest = score_table(spark, str(shop["features"]), str(trained_model["dir"]), str(out),
                               ScoreConfig(explain=3, file_tasks=file_tasks))
        assert manifest["reasons"]["k"] == 3 and manifest["committer"] == (COMMITTER if file_tasks else "file")
        runs[file_tasks] = spark.read.parquet(str(out)).drop(SCORED_AT)
    fast, slow = runs[True], runs[False]
    assert fast.exceptAll(slow).count() == 0 and slow.exceptAll(fast).count() == 0
    plain = spark.read.parquet(str(scored["out"])).select(*VALUE_COLS)
    assert fast.select(*VALUE_COLS).exceptAll(plain).count() == 0

    rows = fast.toPandas()
    names = [n for n, _ in reason_columns(3)]
    values = rows[[v for _, v in reason_columns(3)]].to_numpy()
    assert set(np.unique(rows[names].to_numpy())) <= set(artifact.spec.input_columns)
    assert (rows[names].nunique(axis=1) == 3).all()           # three different columns a row
    assert (np.diff(values, axis=1) <= 0).all() and np.isfinite(values).all()
    # the reasons point where the score is: a likelier buyer has more pushing it up
    high = rows[PURCHASE_PROBABILITY] > rows[PURCHASE_PROBABILITY].quantile(0.9)
    low = rows[PURCHASE_PROBABILITY] < rows[PURCHASE_PROBABILITY].quantile(0.1)
    assert values[high.to_numpy(), 0].mean() > values[low.to_numpy(), 0].mean()

    with pytest.raises(InputError, match="more reasons than the model's"):
        score_table(spark, str(shop["features"]), str(trained_model["dir"]), str(tmp_path / "x"),
                    ScoreConfig(explain=len(artifact.spec.input_columns) + 1))
    assert not (tmp_path / "x").exists()


def test_drift_names_the_one_input_shifted_threefold(spark, shop, trained_model, scored, tmp_path, caplog):
    """The scoring pass counts each input in its training bins: the table the model was trained on
    shows no drift; with one column multiplied by 3, that column and only it passes PSI 0.25."""
    from retail_ann.features import TOTAL_TIME_S

    quiet = scored["manifest"]["drift"]
    assert quiet["drifted"] == [] and max(c["psi"] for c in quiet["columns"].values()) < 0.1
    assert set(quiet["columns"]) == set(load_artifact(trained_model["dir"]).spec.input_columns)
    shifted = spark.read.parquet(str(shop["features"])).withColumn(TOTAL_TIME_S, F.col(TOTAL_TIME_S) * 3)
    path = tmp_path / "shifted"
    shifted.write.partitionBy(AS_OF_DATE).parquet(str(path))
    manifest = score_table(spark, str(path), str(trained_model["dir"]), str(tmp_path / "out"),
                           ScoreConfig(unique_ids=False))
    assert manifest["drift"]["drifted"] == [TOTAL_TIME_S]
    page = Path(manifest["drift"]["report"]).read_text()   # OUT/_drift/as_of_date=....html: the worst first
    assert Path(manifest["drift"]["report"]) == tmp_path / "out" / "_drift" / "as_of_date=2024-07-01.html"
    assert page.index(f"<h2>{TOTAL_TIME_S}: PSI") < page.index("<h2>", page.index(f"<h2>{TOTAL_TIME_S}") + 1)
    assert page.count("<svg") == 8 and "past the bound" in page
    assert any(f"drift: 1 input column(s) past PSI 0.25 against the training rows: {TOTAL_TIME_S}" in r.message
               for r in caplog.records)
    off = score_table(spark, str(path), str(trained_model["dir"]), str(tmp_path / "off"),
                      ScoreConfig(unique_ids=False, drift=False))
    assert "drift" not in off
