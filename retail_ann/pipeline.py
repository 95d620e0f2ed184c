"""Job functions: read → transform → write for the generate, import and features steps.

Each takes a SparkSession and typed config, does its I/O through ``io`` and returns the manifest it
wrote. The CLI parses arguments and calls these; tests call them directly.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retail_ann import __version__, datagen, inputs, io
from retail_ann import features as fx
from retail_ann.categories import fold_category
from retail_ann.config import DemoConfig, FeaturesConfig, GenerateConfig, ScoreConfig, TrainConfig, parse_date
from retail_ann.errors import InputError
from retail_ann.logs import stage
from retail_ann.publish import publish_delta_partitions, publish_partitions, publish_tables
from retail_ann.schemas import (
    AS_OF_DATE, CLICKSTREAM, CUSTOMERS, REJECT_REASON, RAW_TABLES, TRANSACTIONS, WILL_PURCHASE, TableSchema,
    ValidationLimits, tag_rows,
)

log = logging.getLogger(__name__)


def run_generate(spark: SparkSession, cfg: GenerateConfig, out: str) -> dict:
    """Generate the synthetic shop and write ``out/{customers,transactions,clickstream}`` as Parquet,
    replacing the three tables together (``publish.publish_tables``)."""
    with stage("generate.write", log) as s:   # the three tables, replaced together (publish_tables)
        rows = publish_tables(spark, datagen.generate_shop(spark, cfg), out)
        s.rows = sum(rows.values())
    manifest = {
        "job": "generate", "version": __version__, "config": vars(cfg), "rows": rows, "seconds": {"write": s.seconds},
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    io.write_manifest(spark, out, manifest)
    return manifest


def load_validated(
    spark: SparkSession, path: str, schema: TableSchema, limits: ValidationLimits,
    out: str, partition: str, fmt: str | None = None,
) -> tuple[DataFrame, int, dict]:
    """Read a raw table and ``validated`` it."""
    return validated(spark, inputs.read_table(spark, path, fmt), schema, limits, out, partition, path)


def validated(
    spark: SparkSession, raw: DataFrame, schema: TableSchema, limits: ValidationLimits,
    out: str, partition: str, source: str,
) -> tuple[DataFrame, int, dict]:
    """Quarantine the rows of ``raw`` that break the schema, and return (valid rows, rejects,
    what the valid rows hold: ``rows`` and, for a dated table, ``data_start``/``data_end``, the
    first and last value of its ``time_column`` as ISO text).

    One pass tags the rows and counts the valid and rejected ones (with the time range); the
    rejected rows are written only when that pass found some (or an earlier run's are replaced).
    An input with no valid row at all is an ``InputError``: nothing downstream could mean anything.
    """
    tagged = tag_rows(raw, schema, limits)
    held = data_range(tagged.rows, schema)
    n_rejected = held.pop("rejected")
    io.write_quarantine(spark, tagged.rejected, out, schema.name, partition, rows=n_rejected)
    if held["rows"] == 0:
        detail = ""
        if n_rejected:
            reasons = (spark.read.parquet(io.quarantine_path(out, schema.name, partition))
                       .groupBy(REJECT_REASON).count().orderBy(F.desc("count")).limit(3).collect())
            detail = f"; all {n_rejected} row(s) rejected, most often: " + ", ".join(
                f"{r[REJECT_REASON]} ({r['count']})" for r in reasons)
        raise InputError(f"{schema.name} at {source}: no valid rows{detail}")
    return tagged.valid, n_rejected, held


def data_range(df: DataFrame, schema: TableSchema) -> dict:
    """``rows`` of ``df`` and, when ``schema`` has a time column, its first and last value
    (``data_start``, ``data_end``; null when no row has one), in one pass. For rows tagged by
    ``schemas.tag_rows`` (a ``reject_reason`` column) these are of the valid rows, and
    ``rejected`` counts the others."""
    tagged = REJECT_REASON in df.columns
    good = F.col(REJECT_REASON) == "" if tagged else F.lit(True)
    aggs = [F.count(F.when(good, 1)).alias("rows")]
    if tagged:
        aggs.append(F.count(F.when(~good, 1)).alias("rejected"))
    stamp = bool(schema.time_column) and isinstance(df.schema[schema.time_column].dataType, T.TimestampType)
    if schema.time_column:
        # a timestamp collected to Python arrives in the driver's own time zone: as microseconds
        # since the epoch instead, made UTC text here
        for name, agg in (("data_start", F.min), ("data_end", F.max)):
            value = agg(F.when(good, F.col(schema.time_column)))
            aggs.append((F.unix_micros(value) if stamp else value).alias(name))
    row = df.agg(*aggs).first().asDict()
    if stamp:
        row = {k: (_EPOCH + dt.timedelta(microseconds=v) if k in ("data_start", "data_end") and v is not None else v)
               for k, v in row.items()}
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


_EPOCH = dt.datetime(1970, 1, 1)   # naive: the data ranges are written as UTC wall time, without an offset


def run_import(spark: SparkSession, fmt: str, path: str, out: str, cfg: FeaturesConfig | None = None) -> dict:
    """Import a public retail log (``importers.FORMATS``) as canonical Parquet tables
    ``out/transactions`` (and ``out/customers`` when the format has customers), replacing them.

    Rows are validated as ``features`` validates them (``cfg``'s limits, default the shipped
    ones); rejects go to ``out/_rejected/<table>/format=<fmt>/`` with a reason, counted in
    ``out/_manifest.json``.
    """
    from retail_ann.importers import FORMATS

    if fmt not in FORMATS:
        raise InputError(f"unknown import format {fmt!r}; use one of {', '.join(FORMATS)}")
    limits = _limits(cfg or FeaturesConfig())
    importer = FORMATS[fmt]
    rejected: dict[str, int] = {}
    data: dict[str, dict] = {}
    with stage(f"import.{fmt}", log) as s:
        valid_tables: dict[str, DataFrame] = {}
        for name, table in importer.to_tables(importer.read(spark, path)).items():
            valid_tables[name], rejected[name], data[name] = validated(spark, table, RAW_TABLES[name], limits, out,
                                                                       f"format={fmt}", path)
            del data[name]["rows"]
        rows = publish_tables(spark, valid_tables, out)   # replaced together; a kill keeps the old ones
        s.rows = rows["transactions"]
    manifest = {
        "job": "import", "version": __version__, "format": fmt, "input": path, "rows": rows, "rejected": rejected,
        "data": data, "seconds": s.seconds, "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    io.write_manifest(spark, out, manifest)
    log.info("imported %s from %s: %s; %d rejected row(s)", fmt, path,
             ", ".join(f"{k}={v}" for k, v in rows.items()), sum(rejected.values()))
    return manifest


def check_features_request(cfg: FeaturesConfig, as_of: dt.date, out: str, inputs: dict[str, str | None]) -> None:
    """What can be known wrong before any work: a window past the calendar's end, an ``out`` that
    is a file or lies inside an input directory (the next run would read its own output)."""
    window = fx.FeatureWindow(as_of, cfg.lookback_days, cfg.horizon_days, cfg.recent_days)
    try:
        window.feature_start, window.label_end   # dates past 9999-12-31 or before 0001-01-01 raise
    except OverflowError:
        raise InputError(f"--as-of {as_of} with --lookback-days {cfg.lookback_days} and --horizon-days "
                         f"{cfg.horizon_days} runs past the calendar (0001-01-01..9999-12-31)") from None
    check_output(out, inputs)


def check_output(out: str, inputs: dict[str, str | None]) -> None:
    """An ``out`` that is a file, or lies inside one of ``inputs`` (the next run would read its
    own output), is an ``InputError``; known before any work."""
    if io.is_local(out) and io.local_path(out).is_file():
        raise InputError(f"--out {out} is a file; give a directory")
    for name, path in inputs.items():
        if path and io.is_inside(out, path):
            raise InputError(f"--out {out} is inside the {name} input {path}: the next run would read its own output")


def run_features(
    spark: SparkSession, cfg: FeaturesConfig, as_of: dt.date, transactions: str, out: str,
    clickstream: str | None = None, customers: str | None = None, fmt: str | None = None,
) -> dict:
    """Build the feature table as of ``as_of`` and write ``out/as_of_date=<as_of>/``.

    Rows failing validation go to ``out/_rejected/<table>/as_of_date=<as_of>/`` and are counted in
    the manifest; a rerun for the same date replaces that partition only.
    """
    inputs = {TRANSACTIONS.name: transactions, CLICKSTREAM.name: clickstream, CUSTOMERS.name: customers}
    check_features_request(cfg, as_of, out, inputs)
    window = fx.FeatureWindow(as_of, cfg.lookback_days, cfg.horizon_days, cfg.recent_days)
    limits = _limits(cfg)
    partition = f"{AS_OF_DATE}={as_of.isoformat()}"
    rejected: dict[str, int] = {}
    data: dict[str, dict] = {}
    frames: dict[str, DataFrame] = {}
    with stage("features.validate", log) as v:
        for name, path in inputs.items():
            if path is not None:
                frames[name], rejected[name], data[name] = load_validated(
                    spark, path, RAW_TABLES[name], limits, out, partition, fmt)
        frames[TRANSACTIONS.name], repeats = fx.split_duplicate_rows(frames[TRANSACTIONS.name])
        rejected["transactions_duplicates"] = io.write_quarantine(
            spark, repeats.withColumn(REJECT_REASON, F.lit("duplicate row")), out, "transactions_duplicates", partition)
        if CUSTOMERS.name in frames:
            frames[CUSTOMERS.name], duplicates = fx.dedupe_customers(frames[CUSTOMERS.name])
            dup_rows = duplicates.withColumn(REJECT_REASON, F.lit("duplicate customer_id"))
            rejected["customers_duplicates"] = io.write_quarantine(spark, dup_rows, out, "customers_duplicates", partition)
        v.extra["rejected"] = sum(rejected.values())
    data_end = data[TRANSACTIONS.name]["data_end"]
    labels_complete = window.labels_complete(dt.datetime.fromisoformat(data_end))
    if not labels_complete:
        log.warning("labels incomplete: the label window [%s, %s) ends after the data does (last transaction %s); "
                    "buyers of the missing days are labelled non-buyers, so train refuses this partition "
                    "unless told --allow-incomplete-labels", as_of, window.label_end, data_end)
    categories = list(dict.fromkeys(fold_category(c) for c in cfg.categories)) or fx.top_categories(
        frames[TRANSACTIONS.name], window, cfg.max_categories)
    table = fx.build_features(
        frames[TRANSACTIONS.name], window, categories,
        clickstream=frames.get(CLICKSTREAM.name), customers=frames.get(CUSTOMERS.name),
    )
    with stage("features.aggregate", log) as a:
        table = table.cache()
        summary = table.agg(F.count("*").alias("rows"), F.avg(WILL_PURCHASE).alias("rate")).first()
        a.rows = rows = summary["rows"]
    if not rows:
        raise InputError(f"no customer is known before {as_of}: check --as-of against the dates in {transactions}")
    write_started = time.perf_counter()

    def manifest(staged_rows: int) -> dict:
        return {
            "job": "features", "version": __version__, AS_OF_DATE: as_of.isoformat(),
            "window": {"feature_start": window.feature_start.isoformat(), "as_of": as_of.isoformat(),
                       "label_end": window.label_end.isoformat()},
            "config": vars(cfg), "categories": categories, "inputs": {k: v for k, v in inputs.items() if v},
            "data": data, "labels_complete": labels_complete,
            "rows": staged_rows, "purchase_rate": round(summary["rate"], 4), "rejected": rejected,
            "seconds": {"validate": v.seconds, "aggregate": a.seconds, "write": round(time.perf_counter() - write_started, 2)},
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    with stage("features.write", log) as w:
        if cfg.output_format == "delta":   # one replaceWhere commit: Delta's log is the atomic publish
            written = publish_delta_partitions(spark, table, out, AS_OF_DATE, [as_of.isoformat()], rows, manifest,
                                               {"job": "features", AS_OF_DATE: as_of.isoformat(), "version": __version__})
        else:
            written = publish_partitions(spark, table, out, AS_OF_DATE, [as_of.isoformat()], rows, manifest)
        w.rows = rows
    table.unpersist()
    log.info("features as of %s: %d customers, purchase rate %.3f, %d rejected row(s)",
             as_of, rows, summary["rate"], sum(rejected.values()))
    return written


def _limits(cfg: FeaturesConfig) -> ValidationLimits:
    return ValidationLimits(cfg.max_line_amount, cfg.max_quantity, cfg.max_duration_s)


def run_demo(spark: SparkSession, cfg: DemoConfig, out: str, train_cfg: TrainConfig, score_cfg: ScoreConfig) -> dict:
    """The whole pipeline on a generated shop: ``out/raw`` → ``out/features`` → ``out/model``
    (with its report) → ``out/predictions``."""
    from retail_ann.scoring import score_table
    from retail_ann.training import train_table

    out = out.rstrip("/")
    raw = f"{out}/raw"
    gen_cfg = GenerateConfig(customers=cfg.customers, days=cfg.days, start=cfg.start, seed=cfg.seed)
    run_generate(spark, gen_cfg, raw)
    feat_cfg = FeaturesConfig(lookback_days=cfg.lookback_days, horizon_days=cfg.horizon_days)
    as_of = parse_date(cfg.as_of, "as_of")
    features = run_features(spark, feat_cfg, as_of, f"{raw}/transactions", f"{out}/features",
                            clickstream=f"{raw}/clickstream", customers=f"{raw}/customers")
    with stage("demo.train", log):
        metrics = train_table(spark, f"{out}/features", f"{out}/model", train_cfg)
    scores = score_table(spark, f"{out}/features", f"{out}/model", f"{out}/predictions", score_cfg)
    return {"features": features, "metrics": metrics, "score": scores}
