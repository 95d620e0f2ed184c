"""Batch scoring of a feature table with a trained artifact, on Spark executors.

The driver loads the artifact (spec + numpy weights, no TensorFlow), checks it against the
table's schema before anything is written, and ships it to executors once: through a broadcast on a
classic session, inside the function's closure on Spark Connect (where there is no SparkContext;
an MLP's weights are tens of KB). Executors score with ``mapInArrow`` over large Arrow batches:
``spec.transform`` → forward pass → ``purchase_probability``, ``predicted_purchase`` (the stored
threshold) and ``predicted_spend``.

Engines: ``numpy`` runs the forward pass from the weight arrays, so executors import no
TensorFlow; ``keras`` calls the saved Keras models directly (never ``predict``), for comparison.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.accumulators import AccumulatorParam
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from retail_ann import __version__, inputs, io
from retail_ann.artifact import Artifact, load_artifact
from retail_ann.targets import PURCHASE, SPEND, NetworkRunner
from retail_ann.config import ScoreConfig
from retail_ann.errors import InputError
from retail_ann.drift import count_values, report_html as drift_report, summary as drift_summary
from retail_ann.explain import Explainer, ReasonCodes
from retail_ann.file_scoring import COMMITTER, footer_counts, score_files
from retail_ann.logs import stage
from retail_ann.preprocessing import column_types_of
from retail_ann.publish import publish_delta_partitions, publish_partitions, publish_written
from retail_ann.schemas import (
    AS_OF_DATE, CORRUPT_RECORD, CUSTOMER_ID, MODEL_VERSION, PREDICTED_PURCHASE, PREDICTED_SPEND, PURCHASE_PROBABILITY,
    REJECT_REASON, SCORED_AT, is_blank, reason_columns, with_reject_reason,
)

log = logging.getLogger(__name__)

ENGINES = ("numpy", "keras")
KERAS_CACHE_SIZE = 3   # networks a long-lived Python worker keeps loaded (like Spark's ml model_cache)
_keras_models: OrderedDict[tuple[str, str, str], object] = OrderedDict()
_keras_lock = threading.Lock()


def prediction_schema(artifact: Artifact, id_field: T.StructField, reasons: ReasonCodes | None = None) -> T.StructType:
    """Output columns: the id, what the artifact's tasks predict, the reason codes asked for, model
    version, time, as-of date."""
    fields = [T.StructField(id_field.name, id_field.dataType, True)]
    if PURCHASE in artifact.tasks:
        fields += [T.StructField(PURCHASE_PROBABILITY, T.DoubleType(), False),
                   T.StructField(PREDICTED_PURCHASE, T.IntegerType(), False)]
    if SPEND in artifact.tasks:
        fields.append(T.StructField(PREDICTED_SPEND, T.DoubleType(), False))
    for name, value in reason_columns(reasons.k if reasons else 0):
        fields += [T.StructField(name, T.StringType(), False), T.StructField(value, T.DoubleType(), False)]
    fields += [T.StructField(MODEL_VERSION, T.StringType(), False),
               T.StructField(SCORED_AT, T.TimestampType(), False),
               T.StructField(AS_OF_DATE, T.DateType(), False)]
    return T.StructType(fields)


def check_compatible(df: DataFrame, artifact: Artifact, id_col: str, as_of: dt.date | None,
                     reasons: ReasonCodes | None = None) -> None:
    """Raise ``InputError`` listing every reason the table cannot be scored with the artifact (and
    give the reason codes asked for)."""
    problems = []
    if reasons:
        try:
            reasons.check(artifact.spec, artifact.tasks)
        except ValueError as e:
            problems.append(str(e))
    if id_col not in df.columns:
        problems.append(f"missing id column {id_col}")
    if as_of is None and AS_OF_DATE not in df.columns:
        problems.append(f"no {AS_OF_DATE} column: pass --as-of")
    problems += artifact.spec.check_schema(column_types_of(df.schema))
    if problems:
        raise InputError(f"feature table does not fit model {artifact.version}: " + "; ".join(problems))


def with_date_as_of(df: DataFrame) -> DataFrame:
    """``as_of_date`` as a date column (a CSV or pandas export holds it as text or a timestamp);
    values that are not dates become null."""
    if AS_OF_DATE in df.columns and not isinstance(df.schema[AS_OF_DATE].dataType, T.DateType):
        return df.withColumn(AS_OF_DATE, F.col(AS_OF_DATE).try_cast(T.DateType()))
    return df


def split_scorable(df: DataFrame, id_col: str, as_of: dt.date | None) -> tuple[DataFrame, DataFrame]:
    """(rows to score, rejected rows with ``reject_reason``) of the rows for ``as_of`` (all rows
    when None). A row needs an id, without ``as_of`` an ``as_of_date`` that is a date, and it must
    not be a malformed line (``_corrupt_record`` from a CSV or JSON reader)."""
    tagged = _tag_scorable(df, id_col, as_of)
    columns = [c for c in tagged.columns if c not in (_RAW_AS_OF, REJECT_REASON)]
    valid = tagged.where(F.col(REJECT_REASON) == "").select(*[c for c in columns if c != CORRUPT_RECORD])
    rejected = tagged.where(F.col(REJECT_REASON) != "")
    if AS_OF_DATE in tagged.columns:   # the rejected rows keep the text they came with
        rejected = rejected.withColumn(AS_OF_DATE, F.col(_RAW_AS_OF))
    return valid, rejected.select(*columns, REJECT_REASON)


def count_scorable(df: DataFrame, id_col: str, as_of: dt.date | None) -> tuple[dict[dt.date, int], int]:
    """(rows to score per as-of date, rows rejected) of ``split_scorable``, in one pass over the
    key columns."""
    tagged = _tag_scorable(df, id_col, as_of)
    ok = F.col(REJECT_REASON) == ""
    date = F.col(AS_OF_DATE) if AS_OF_DATE in tagged.columns else F.lit(as_of).alias(AS_OF_DATE)
    counted = tagged.groupBy(date).agg(F.count(F.when(ok, 1)).alias("rows"),
                                       F.count(F.when(~ok, 1)).alias("rejected")).collect()
    return ({r[AS_OF_DATE]: int(r["rows"]) for r in counted if r["rows"]},
            sum(int(r["rejected"]) for r in counted))


_RAW_AS_OF = "__raw_as_of_date"


def _tag_scorable(df: DataFrame, id_col: str, as_of: dt.date | None) -> DataFrame:
    """The rows for ``as_of`` with their ``reject_reason`` ("" for a row to score), the as-of date
    parsed and its text kept as ``_RAW_AS_OF``."""
    if AS_OF_DATE in df.columns:
        df = with_date_as_of(df.withColumn(_RAW_AS_OF, F.col(AS_OF_DATE).cast(T.StringType())))
    if as_of is not None and AS_OF_DATE in df.columns:
        df = df.where(F.col(AS_OF_DATE) == F.lit(as_of))
    rules = [F.when(is_blank(F.col(id_col).cast(T.StringType())), F.lit(f"missing {id_col}"))]
    if as_of is None:
        rules.append(F.when(F.col(AS_OF_DATE).isNull(), F.lit(f"missing or unparseable {AS_OF_DATE}")))
    return with_reject_reason(df, rules)


def unique_keys_by_date(df: DataFrame, id_col: str, as_of: dt.date | None) -> dict[dt.date, int]:
    """Rows per as-of date of ``df`` (rows to score), checking that no id occurs twice for one date
    (two predictions for one key): an ``InputError``, raised before any write. It costs a shuffle of
    the keys."""
    date = F.col(AS_OF_DATE) if AS_OF_DATE in df.columns else F.lit(as_of).alias(AS_OF_DATE)
    per_key = df.groupBy(id_col, date).count()
    by_date = (per_key.groupBy(AS_OF_DATE)
               .agg(F.sum("count").alias("rows"), F.sum(F.when(F.col("count") > 1, 1)).alias("keys_repeated"))
               .collect())
    repeated = sum(r["keys_repeated"] or 0 for r in by_date)
    if repeated:
        examples = [str(r[id_col]) for r in per_key.where(F.col("count") > 1).limit(3).collect()]
        raise InputError(f"{repeated} {id_col} value(s) occur more than once for one {AS_OF_DATE} (e.g. "
                         f"{', '.join(examples)}): one prediction per key needs one row; deduplicate the table")
    return {r[AS_OF_DATE]: int(r["rows"]) for r in by_date}


def vouched_unique(manifests: dict[str, dict], rows: dict[dt.date, int]) -> bool:
    """True when every date scored is a partition as ``features`` wrote it: a features manifest
    whose row count is the partition's now. ``features`` writes one row per customer, so its keys
    need no shuffle to be known unique; a partition changed since (rows added) is checked."""
    return bool(rows) and all(
        manifests.get(d.isoformat(), {}).get("job") == "features" and manifests[d.isoformat()].get("rows") == n
        for d, n in rows.items())


def _keras_network(artifact: Artifact, name: str):
    """The saved Keras model ``name``, loaded once per Python worker and kept in a bounded LRU cache
    (a worker reused across jobs sees many model versions; an unbounded dict would keep them all)."""
    key = (artifact.path, artifact.version, name)
    with _keras_lock:
        if key in _keras_models:
            _keras_models.move_to_end(key)
            return _keras_models[key]
        _pin_tensorflow_threads()
        import keras

        model = keras.saving.load_model(f"{artifact.path}/model_{name}.keras", compile=False)
        _keras_models[key] = model
        while len(_keras_models) > KERAS_CACHE_SIZE:
            _keras_models.popitem(last=False)
        return model


def _pin_tensorflow_threads() -> None:
    """One TensorFlow thread per pool in this worker: Spark already runs a task per core. (Also set
    through ``spark.executorEnv.TF_NUM_*`` in conf/spark-defaults.conf; this holds without it.)"""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:   # TensorFlow already runs in this process; its pools cannot change now
        log.debug("TensorFlow already initialised: thread pools left as they are")


def network_runner(artifact: Artifact, engine: str) -> NetworkRunner:
    """``run(network_name, x) -> outputs`` for the engine: numpy forward pass or the Keras model."""
    if engine == "numpy":
        return artifact.numpy_runner()
    if engine == "keras":
        return lambda name, x: np.asarray(_keras_network(artifact, name)(x, training=False), dtype=np.float64)
    raise InputError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


def _pinned_threads():
    """One BLAS/OpenMP thread per task: Spark already runs a task per core."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # executors without threadpoolctl rely on OMP_NUM_THREADS from spark conf
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1)


class ValueCounts(AccumulatorParam):
    """Spark accumulator of ``{section: {column: [counts]}}``, summed element by element across
    batches and tasks: ``imputed`` (``count_imputed``) and ``drift`` (``drift.count_values``)."""

    def zero(self, value: dict) -> dict:
        return {}

    def addInPlace(self, a: dict, b: dict) -> dict:
        for section, columns in b.items():
            have = a.setdefault(section, {})
            for column, counts in columns.items():
                if column in have:
                    have[column] = [x + y for x, y in zip(have[column], counts)]
                else:
                    have[column] = list(counts)
        return a


def count_imputed(batch: pa.RecordBatch, columns: list[str]) -> dict[str, list[int]]:
    """``{column: [nulls, NaN or ±inf]}`` of the numeric inputs of one batch: the values scoring
    imputes. Vectorised Arrow kernels over the batch the transform reads anyway."""
    counts = {}
    for name in columns:
        col = batch.column(name)
        non_finite = 0
        if pa.types.is_floating(col.type):
            non_finite = int(pc.sum(pc.or_(pc.is_nan(col), pc.is_inf(col))).as_py() or 0)
        if col.null_count or non_finite:
            counts[name] = [col.null_count, non_finite]
    return counts


def score_batches(
    batches: Iterator[pa.RecordBatch], shipped, id_col: str, as_of: dt.date | None,
    scored_at: dt.datetime, engine: str, schema: pa.Schema, counts=None, reasons: ReasonCodes | None = None,
    drift: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Executor side of ``mapInArrow``: score each Arrow batch. ``shipped`` is a broadcast of the
    artifact or the artifact itself; ``counts`` (a ``ValueCounts`` accumulator, or None) gathers
    the nulls and non-finite values the transform imputes and, with ``drift``, each input's values
    in its training bins; ``reasons`` adds reason codes."""
    artifact: Artifact = shipped.value if hasattr(shipped, "value") else shipped
    run = network_runner(artifact, engine)
    explainer = Explainer(artifact.spec, artifact.weights[PURCHASE], reasons.steps) if reasons else None
    scored_micros = int(scored_at.timestamp() * 1_000_000)
    as_of_days = (as_of - dt.date(1970, 1, 1)).days if as_of is not None else 0
    numeric = [f.name for f in artifact.spec.numeric]
    with _pinned_threads():
        for batch in batches:
            n = batch.num_rows
            if counts is not None:
                counts.add({"imputed": count_imputed(batch, numeric),
                            **({"drift": count_values(artifact.spec, batch)} if drift else {})})
            x = artifact.spec.transform(batch)
            preds = artifact.predict_matrix(x, run)
            check_predictions(preds, artifact.path)
            cols = {id_col: batch.column(id_col)}
            cols.update({k: pa.array(v) for k, v in preds.items()})
            if explainer is not None:
                cols.update(reasons.columns(*explainer.top(x, reasons.k)))
            cols[MODEL_VERSION] = pa.array([artifact.version] * n, pa.string())
            cols[SCORED_AT] = pa.array(np.full(n, scored_micros, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC"))
            if as_of is not None:
                cols[AS_OF_DATE] = pa.array(np.full(n, as_of_days, dtype=np.int32)).cast(pa.date32())
            else:
                cols[AS_OF_DATE] = batch.column(AS_OF_DATE).cast(pa.date32())
            yield pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)


def _load_model(spark: SparkSession, model_dir: str, engine: str) -> Artifact:
    """The artifact at ``model_dir``; one on another filesystem (hdfs://, s3a://) is copied to a
    local directory of the driver first (the numpy engine ships what it read to the executors)."""
    if io.is_local(model_dir, spark):
        return load_artifact(model_dir)
    if engine != "numpy":
        raise InputError(f"the {engine} engine reads the .keras files on the executors: give a model directory "
                         f"they all see (a shared path), or use --engine numpy for {model_dir}")
    with tempfile.TemporaryDirectory(prefix="retail-ann-model-") as tmp:
        try:
            io.download_dir(spark, model_dir, Path(tmp))
        except FileNotFoundError:
            raise InputError(f"model directory not found: {model_dir}") from None
        return dataclasses.replace(load_artifact(tmp), path=str(model_dir))   # all of it is in memory now


def _value_counts(spark: SparkSession):
    """A ``ValueCounts`` accumulator; None on Spark Connect, which has none."""
    try:
        return spark.sparkContext.accumulator({}, ValueCounts())
    except Exception:  # Spark Connect: no SparkContext
        return None


def _imputed_summary(counts, rows: int) -> dict | None:
    """The manifest's ``imputed`` section: per numeric input, the nulls and the NaN/±inf values
    scoring replaced by the training imputation value (columns with none are left out). A task
    Spark ran twice (a lost executor) may count its batches twice: these are upper bounds then."""
    if counts is None:
        return None
    per = counts.value.get("imputed", {})
    non_finite = {c: v[1] for c, v in sorted(per.items()) if v[1]}
    if non_finite:
        log.warning("scoring imputed non-finite (NaN/inf) values: %s",
                    ", ".join(f"{c} {n} of {rows}" for c, n in non_finite.items()))
    return {"nulls": {c: v[0] for c, v in sorted(per.items()) if v[0]}, "non_finite": non_finite}


def check_predictions(preds: dict[str, np.ndarray], model: str) -> None:
    """Fail the batch (and so the job) on a probability outside [0, 1] or a non-finite or negative
    spend: networks that give them are not the ones trained together (a file copied over another)."""
    p = preds.get(PURCHASE_PROBABILITY)
    if p is not None and not (np.isfinite(p) & (p >= 0) & (p <= 1)).all():
        bad = p[~(np.isfinite(p) & (p >= 0) & (p <= 1))]
        raise ValueError(f"model {model} gave {bad.size} purchase probabilities outside [0, 1] or not finite "
                         f"(e.g. {float(bad[0])!r}): its networks do not belong together")
    s = preds.get(PREDICTED_SPEND)
    if s is not None and not (np.isfinite(s) & (s >= 0)).all():
        raise ValueError(f"model {model} gave non-finite or negative spend: its networks do not belong together")


def _ship(spark: SparkSession, artifact: Artifact):
    """Broadcast the artifact on a classic session; on Spark Connect it travels in the closure."""
    try:
        sc = spark.sparkContext
    except Exception:  # Spark Connect: no SparkContext
        return artifact
    return sc.broadcast(artifact)


def check_engine(artifact: Artifact, engine: str) -> None:
    """An ``InputError`` for an unknown engine, or for the keras engine without the artifact's
    checked ``.keras`` files (they load on executors: a missing one would fail there, obscurely)."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "keras":
        absent = [f"model_{n}.keras" for n in artifact.weights if not Path(artifact.path, f"model_{n}.keras").is_file()]
        if absent:
            raise InputError(f"the keras engine needs {', '.join(absent)} in {artifact.path}")
        unchecked = [f"model_{n}.keras" for n in artifact.weights if f"model_{n}.keras" not in artifact.checked]
        if unchecked:
            raise InputError(f"{artifact.path} has no checksums for {', '.join(unchecked)} (trained before "
                             "retail-ann wrote CHECKSUMS.json): retrain it, or score with --engine numpy")


def score_dataframe(
    spark: SparkSession, df: DataFrame, artifact: Artifact, id_col: str = "customer_id",
    as_of: dt.date | None = None, engine: str = "numpy", scored_at: dt.datetime | None = None,
    counts=None, reasons: ReasonCodes | None = None, drift: bool = False,
) -> DataFrame:
    """Predictions for every row of ``df`` (lazy). Checks the table against the artifact first.
    ``counts``: a ``ValueCounts`` accumulator for the imputed values (see ``score_batches``);
    ``reasons``: the reason codes to add; ``drift``: count the inputs' training bins into ``counts``."""
    check_compatible(df, artifact, id_col, as_of, reasons)
    check_engine(artifact, engine)
    df = with_date_as_of(df)
    needed = [id_col, *artifact.spec.input_columns]
    if as_of is None:
        needed.append(AS_OF_DATE)
    else:
        df = df.where(F.col(AS_OF_DATE) == F.lit(as_of)) if AS_OF_DATE in df.columns else df
    out_schema = prediction_schema(artifact, df.schema[id_col], reasons)
    arrow_schema = to_arrow_schema(out_schema)
    fn = partial(score_batches, shipped=_ship(spark, artifact), id_col=id_col, as_of=as_of,
                 scored_at=scored_at or dt.datetime.now(dt.timezone.utc), engine=engine, schema=arrow_schema,
                 counts=counts, reasons=reasons, drift=drift)
    return df.select(*dict.fromkeys(needed)).mapInArrow(fn, out_schema)


def _horizons(manifests: dict[str, dict], dates: list[dt.date]) -> dict:
    """``label_windows``: for each date scored whose features manifest says so, the window the
    probabilities and spend refer to (``[as_of, label_end)``, ``horizon_days`` long)."""
    windows = {}
    for d in dates:
        m = manifests.get(d.isoformat(), {})
        if m.get("job") == "features" and "window" in m:
            windows[d.isoformat()] = {"label_end": m["window"].get("label_end"),
                                      "horizon_days": m.get("config", {}).get("horizon_days")}
    return {"label_windows": windows} if windows else {}


def _file_tasks_input(spark: SparkSession, features: str, fmt: str | None, out: str, cfg: ScoreConfig,
                      as_of: dt.date | None) -> dict[str, list[str]] | None:
    """The Parquet data files of each as-of date to score for ``file_scoring`` (tasks that read,
    score and write files with pyarrow), or None where the ``mapInArrow`` path must score: the
    switch ``file_tasks`` off, the keras engine, Delta in or out, a path that is not a local (or
    shared) filesystem's, a partition directory that is not named by a date, files that are not
    ``.parquet``, or no SparkContext (Spark Connect). The caller still needs the table to be one
    its manifests vouch for."""
    if not (cfg.file_tasks and cfg.engine == "numpy" and cfg.output_format == "parquet"
            and fmt in (None, "parquet") and io.is_local(features, spark) and io.is_local(out, spark)):
        return None
    try:
        spark.sparkContext
    except Exception:  # Spark Connect
        return None
    root = io.local_path(features)
    if (root / "_delta_log").exists():   # a Delta table's directory also holds files its log removed
        return None
    if (root / io.MANIFEST_FILE).is_file():   # one partition's directory: its date is --as-of
        dirs = {as_of.isoformat(): root} if as_of is not None else {}
    else:
        dirs = {}
        for d in sorted(root.glob(f"{AS_OF_DATE}=*")):
            value = d.name.split("=", 1)[1]
            try:
                date = dt.date.fromisoformat(value)
            except ValueError:   # Spark reads it as a date that does not parse: a reject
                return None
            if not d.is_dir() or date.isoformat() != value:   # what Spark reads there is for Spark to say
                return None
            if as_of is None or date == as_of:
                dirs[value] = d
    files = {d: paths for d, p in dirs.items() if (paths := io.data_files(spark, str(p)))}
    if not files or not all(f.endswith(".parquet") for paths in files.values() for f in paths):
        return None
    return files


def score_table(
    spark: SparkSession, features: str, model_dir: str, out: str, cfg: ScoreConfig,
    as_of: dt.date | None = None, fmt: str | None = None, version: int | None = None,
) -> dict:
    """Score a feature table and write ``out/as_of_date=…/`` (that partition replaced, others kept)
    with ``_manifest.json``; returns the manifest."""
    with stage("score.load", log):
        artifact = _load_model(spark, model_dir, cfg.engine)
        df = inputs.read_table(spark, features, fmt, version)
        reasons = ReasonCodes(cfg.explain, cfg.explain_steps) if cfg.explain else None
        check_compatible(df, artifact, cfg.id_col, as_of, reasons)
        check_engine(artifact, cfg.engine)   # before any work, though the mapInArrow plan is built later
        source, rejected = split_scorable(df, cfg.id_col, as_of)
        counts = _value_counts(spark)
        scored_at = dt.datetime.now(dt.timezone.utc)
    with stage("score.count_input", log) as s:
        # a feature table of ours vouches for its keys in its manifests; anything else is checked
        manifests = io.partition_manifests(spark, features, AS_OF_DATE)
        ours = cfg.id_col == CUSTOMER_ID and any(m.get("job") == "features" for m in manifests.values())
        files = _file_tasks_input(spark, features, fmt, out, cfg, as_of) if ours else None
        footers = footer_counts(files, cfg.id_col) if files is not None else None
        if footers is not None:   # the Parquet footers' counts, and their statistics show no blank id
            by_date, n_rejected = {dt.date.fromisoformat(d): n for d, n in footers.items()}, 0
        else:
            by_date, n_rejected = count_scorable(df, cfg.id_col, as_of)   # reads the id and date columns only
        vouched = ours and not n_rejected and vouched_unique(manifests, by_date)
        if not cfg.unique_ids:
            keys = "not checked (unique_ids: false)"
        elif vouched:
            keys = "unique by the features manifests"
        else:   # not ours, or changed since features wrote it
            by_date = unique_keys_by_date(source, cfg.id_col, as_of)
            keys = "checked"
        rows_in, dates = sum(by_date.values()), sorted(by_date)
        s.rows = rows_in
    partition = f"{AS_OF_DATE}={as_of or 'any'}"
    rejected_to = io.quarantine_path(out, "features", partition)
    io.write_quarantine(spark, rejected, out, "features", partition, rows=n_rejected)   # an earlier run's replaced
    if rows_in == 0:
        raise InputError(f"no rows to score in {features}" + (f" for {AS_OF_DATE} {as_of}" if as_of else "")
                         + (f"; {n_rejected} rejected to {rejected_to}" if n_rejected else ""))
    write_started = time.perf_counter()

    drift_page = f"{out.rstrip('/')}/_drift/{AS_OF_DATE}={'_'.join(d.isoformat() for d in dates)}.html"

    @functools.cache   # once, after the write has filled the accumulator (it warns)
    def drifted() -> dict | None:
        section = drift_summary(artifact.spec, counts.value.get("drift", {}), cfg.drift_bound) \
            if counts is not None and cfg.drift else None
        return {**section, "report": io.absolute(drift_page, spark)} if section else None

    def manifest(rows_out: int) -> dict:
        seconds = round(time.perf_counter() - write_started, 2)
        imputed = _imputed_summary(counts, rows_in)
        return {
            "job": "score", "version": __version__, "model_version": artifact.version,
            "model_dir": io.absolute(model_dir, spark), "engine": cfg.engine,
            "spec_hash": hashlib.sha256(artifact.spec.to_json().encode()).hexdigest()[:16],
            "features": io.absolute(features, spark), "out": io.absolute(out, spark),
            "threshold": artifact.threshold, **_horizons(manifests, dates),
            "as_of_dates": [d.isoformat() for d in dates], "rows_in": rows_in, "rows_out": rows_out,
            "batch_rows": cfg.batch_rows, "keys": keys, "rows_rejected": n_rejected, **({"rejected_to": rejected_to} if n_rejected else {}),
            **({"imputed": imputed} if imputed is not None else {}),
            **({"drift": drifted()} if drifted() is not None else {}),
            **({"reasons": {"k": reasons.k, "steps": reasons.steps, "scale": "logit",
                            "method": "integrated gradients from the training rows' typical customer"}}
               if reasons else {}),
            "seconds": seconds, "rows_per_s": round(rows_in / max(seconds, 1e-9)),
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    previous = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.batch_rows))
    try:
        with stage("score.write", log) as s:
            values = [d.isoformat() for d in dates]
            if vouched and files is not None and set(values) <= set(files):   # tasks read, score, write files
                scored_files = {d: files[d] for d in values}

                def write(staging: str) -> str:
                    schema = to_arrow_schema(prediction_schema(artifact, source.schema[cfg.id_col], reasons))
                    score_files(spark, artifact, scored_files, cfg.id_col, cfg.batch_rows, scored_at, schema, counts,
                                staging, reasons, cfg.drift)
                    return COMMITTER

                written = publish_written(spark, write, out, AS_OF_DATE, values, rows_in, manifest)
            else:
                predictions = score_dataframe(spark, source, artifact, cfg.id_col, as_of, cfg.engine, scored_at,
                                              counts, reasons, cfg.drift)
                if cfg.output_format == "parquet":
                    written = publish_partitions(spark, predictions, out, AS_OF_DATE, values, rows_in, manifest)
                else:   # Delta: one replaceWhere commit of the dates, its log the atomic publish
                    written = publish_delta_partitions(spark, predictions, out, AS_OF_DATE, values, rows_in, manifest, {
                        "job": "score", "model_version": artifact.version, "as_of_dates": values,
                        "threshold": artifact.threshold})
            s.rows = rows_in
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", previous)
    if drifted() is not None:   # for people: the PSI of every input, the worst ones' bins side by side
        io.write_text(spark, drift_page, drift_report(
            artifact.spec, drifted(), f"Drift of {', '.join(d.isoformat() for d in dates)} against model {artifact.version}"))
    log.info("scored %d rows with model %s (%s engine) at %d rows/s", rows_in, artifact.version, cfg.engine,
             written["rows_per_s"])
    return written
