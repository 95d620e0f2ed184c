"""Training: a Spark feature table -> a driver sample -> ``FeatureSpec`` -> Keras MLPs -> MODEL_DIR.

Public API
----------
``train_table(spark, features_path, out_dir, cfg, fmt=None, test_path=None, version=None) -> dict``
    Read the table (``retail_ann.inputs.read_table``), refuse partitions whose manifest says their
    labels are incomplete, sample at most ``cfg.sample_rows`` rows to the driver through Arrow
    (deterministic: rows ordered by a hash of id, as_of_date and ``cfg.data_seed``), then
    ``train_frame``. ``test_path``: a table whose rows are the test rows (all of
    ``features_path`` then trains); ``version``: a Delta table as of that commit. Returns the
    content of ``metrics.json`` plus ``model_dir`` and ``version``.
``train_frame(pdf, out_dir, cfg, data_info=None, test_pdf=None) -> dict``
    The same from pandas DataFrames already on the driver.

The steps live in their own modules: ``labels`` (tasks, labels, feature columns, unusable rows),
``splits`` (test, fit and validation rows, validation folds), ``targets`` (one object per target:
its networks' fit and evaluation, and the inverse transform scoring uses), ``networks`` (Keras
fitting, early stopping, member merging) and ``artifact`` (the model directory, written and read).
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retail_ann import __version__
from retail_ann.artifact import VERSION_FILE, content_hash, write_artifact
from retail_ann.config import TrainConfig
from retail_ann.drift import fit_profile
from retail_ann.errors import InputError
from retail_ann.labels import (
    TEST_ROW_COL, check_sizes, drop_rows, feature_columns, label_arrays, resolve_task,
)
from retail_ann.logs import stage
from retail_ann.preprocessing import FeatureSpec, numeric_values
from retail_ann.schemas import AS_OF_DATE, CORRUPT_RECORD, MALFORMED_RECORD
from retail_ann.segments import masks, segment_metrics
from retail_ann.splits import split_rows
from retail_ann.targets import PURCHASE, SPEND, PurchaseTarget, SpendTarget

log = logging.getLogger(__name__)

_HASH_COL = "__sample_hash"


# ================================================================================ Spark side
def train_table(spark, features_path: str, out_dir: str, cfg: TrainConfig, fmt: str | None = None,
                test_path: str | None = None, version: int | None = None,
                holdout_as_of: dt.date | None = None) -> dict:
    """Train on the feature table at ``features_path`` and write the artifact to ``out_dir``.

    With ``test_path`` the metrics and report are on that table's rows (a later cutoff, or customers
    the caller held out) and every row of ``features_path`` trains; with ``holdout_as_of`` the test
    rows are that partition of the table and the earlier partitions whose label window has ended
    by then train (out of time: as the model is used); else ``cfg.split`` of the rows are held out."""
    from retail_ann.inputs import read_table
    from retail_ann.io import is_local, partition_manifests, upload_dir

    if holdout_as_of is not None and test_path:
        raise InputError("--holdout-as-of and --test-features both name the test rows: give one")
    paths = {"train": features_path, **({"test": test_path} if test_path else {})}
    windows = {k: label_windows(partition_manifests(spark, p, AS_OF_DATE), cfg) for k, p in paths.items()}
    tables = {k: read_table(spark, p, fmt, version if k == "train" else None) for k, p in paths.items()}
    data_info: dict[str, Any] = {}
    if holdout_as_of is not None:
        tables, windows, data_info = _holdout(tables["train"], windows["train"], holdout_as_of)
    frames = {k: sample_to_driver(t, cfg) for k, t in tables.items()}
    pdf, sampled = frames["train"]
    data_info = {**sampled, **data_info, "source": str(features_path)}
    if windows["train"]:
        data_info["label_windows"] = windows["train"]
    test_pdf = None
    if "test" in frames:
        test_pdf, test_info = frames["test"]
        data_info["test_source"] = str(test_path or f"{features_path} ({AS_OF_DATE}={holdout_as_of})")
        data_info["test_rows_total"] = test_info["rows_total"]
        if windows.get("test"):
            data_info["test_label_windows"] = windows["test"]
    if is_local(out_dir, spark):
        return train_frame(pdf, out_dir, cfg, data_info=data_info, test_pdf=test_pdf)
    with tempfile.TemporaryDirectory(prefix="retail-ann-model-") as tmp:   # hdfs://, s3a://: built here, copied
        result = train_frame(pdf, f"{tmp}/model", cfg, data_info=data_info, test_pdf=test_pdf)
        upload_dir(spark, Path(tmp) / "model", out_dir, last=VERSION_FILE)
    log.info("model directory copied to %s", out_dir)
    return {**result, "model_dir": str(out_dir)}


def _holdout(df, windows: dict[str, dict], as_of: dt.date) -> tuple[dict, dict, dict]:
    """The tables, label windows and data facts of an out-of-time split of ``df``: the partition
    ``as_of`` tests; the earlier ones whose labels ended by ``as_of`` train (a partition whose label
    window runs past it would train on what happened after the test cutoff: left out, said so)."""
    from pyspark.sql import functions as F

    held = as_of.isoformat()
    if AS_OF_DATE not in df.columns:
        raise InputError(f"--holdout-as-of needs a table partitioned by {AS_OF_DATE}")
    if not windows:
        raise InputError("--holdout-as-of needs the feature manifests (their label windows), which this table lacks")
    if held not in windows:
        raise InputError(f"--holdout-as-of {held}: the table has no partition {AS_OF_DATE}={held} "
                         f"(it has {', '.join(sorted(windows))})")
    earlier = [d for d in sorted(windows) if d < held]
    overlapping = [d for d in earlier if str(windows[d]["label_end"]) > held]
    usable = [d for d in earlier if d not in overlapping]
    for d in overlapping:
        log.warning("leaving out %s=%s: its labels run to %s, past the held-out cutoff %s",
                    AS_OF_DATE, d, windows[d]["label_end"], held)
    if not usable:
        raise InputError(f"--holdout-as-of {held}: no earlier partition's label window ends by then "
                         f"(partitions {', '.join(sorted(windows))})")
    date = F.col(AS_OF_DATE).cast("string")
    tables = {"train": df.where(date.isin(*usable)), "test": df.where(date == held)}
    info = {"holdout_as_of": held, "train_as_of_dates": usable, "left_out_as_of_dates": overlapping}
    return tables, {"train": {d: windows[d] for d in usable}, "test": {held: windows[held]}}, info


def label_windows(manifests: dict[str, dict], cfg: TrainConfig) -> dict[str, dict]:
    """Each feature partition's label window and whether the data covered it, from the manifests
    ``features`` wrote; a partition whose labels are incomplete is an ``InputError`` unless
    ``cfg.allow_incomplete_labels``."""
    windows = {}
    for date, m in sorted(manifests.items()):
        if "labels_complete" not in m:   # not a feature partition of ours, or one from before the field
            continue
        end = m.get("data", {}).get("transactions", {}).get("data_end")
        windows[date] = {"label_end": m.get("window", {}).get("label_end"), "data_end": end,
                         "labels_complete": bool(m["labels_complete"])}
    incomplete = [d for d, w in windows.items() if not w["labels_complete"]]
    if incomplete and not cfg.allow_incomplete_labels:
        w = windows[incomplete[0]]
        raise InputError(
            f"labels incomplete for as_of_date {', '.join(incomplete)}: the label window ends {w['label_end']}, "
            f"after the last transaction ({w['data_end']}), so late buyers count as non-buyers; use an earlier "
            "--as-of or a shorter --horizon-days in features, or pass --allow-incomplete-labels")
    if incomplete:
        log.warning("training on incomplete labels (as_of_date %s), as --allow-incomplete-labels says",
                    ", ".join(incomplete))
    return windows


def sample_to_driver(df, cfg: TrainConfig) -> tuple[pd.DataFrame, dict]:
    """At most ``cfg.sample_rows`` rows of ``df`` as pandas, the same rows and order for the same
    table and seed. Decimals arrive as doubles; nested columns are left out."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols = []
    for f in df.schema.fields:
        if isinstance(f.dataType, T.DecimalType):
            cols.append(F.col(f"`{f.name}`").cast("double").alias(f.name))
        elif isinstance(f.dataType, (T.ArrayType, T.MapType, T.StructType, T.BinaryType)):
            log.warning("column %s (%s) is not a scalar: left out", f.name, f.dataType.simpleString())
        else:
            cols.append(F.col(f"`{f.name}`"))
    df = df.select(*cols)
    total = df.count()
    if total == 0:
        raise InputError("the feature table is empty")
    key_cols = [c for c in (cfg.id_col, AS_OF_DATE) if c in df.columns] or list(df.columns)
    hashed = df.withColumn(_HASH_COL, F.xxhash64(*[F.col(f"`{c}`") for c in key_cols], F.lit(int(cfg.data_seed))))
    if total > cfg.sample_rows:
        # hash-based Bernoulli pre-filter (a bit more than needed), then the lowest hashes
        keep = min(1.0, 1.2 * cfg.sample_rows / total)
        buckets = 1 << 20
        hashed = hashed.where(F.pmod(F.col(_HASH_COL), F.lit(buckets)) < F.lit(int(math.ceil(keep * buckets))))
        hashed = hashed.orderBy(_HASH_COL).limit(cfg.sample_rows)
    pdf = hashed.toPandas()
    sort_cols = [_HASH_COL] + ([cfg.id_col] if cfg.id_col in pdf.columns else [])
    pdf = pdf.sort_values(sort_cols, kind="stable").drop(columns=[_HASH_COL]).reset_index(drop=True)
    info: dict[str, Any] = {"rows_total": int(total), "rows_sampled": int(len(pdf))}
    if AS_OF_DATE in pdf.columns and pdf[AS_OF_DATE].notna().any():
        dates = sorted({str(d) for d in pdf[AS_OF_DATE].dropna().unique()})
        info["as_of_dates"] = dates if len(dates) <= 12 else dates[:3] + ["..."] + dates[-3:]
        info["period"] = f"{dates[0]} .. {dates[-1]}"
    log.info("sampled %d of %d rows to the driver", len(pdf), total)
    return pdf, info


# ============================================================================== driver side
def train_frame(pdf: pd.DataFrame, out_dir: str, cfg: TrainConfig, data_info: dict | None = None,
                test_pdf: pd.DataFrame | None = None) -> dict:
    """Train on rows already on the driver and write the artifact to ``out_dir``; with
    ``test_pdf`` (same columns) its rows are the test rows and all of ``pdf`` trains."""
    started = time.time()
    data_info = dict(data_info or {"rows_total": int(len(pdf)), "rows_sampled": int(len(pdf))})
    pdf, y, s, tasks, (purchase_label, spend_label), (numeric, categorical), given_test = \
        _usable_rows(pdf, test_pdf, cfg, data_info)
    split = split_rows(pdf, y, s, cfg, given_test)
    data_info.update({"rows_used": int(len(pdf)), "rows_fit": int(len(split.fit)),
                      "rows_validation": int(len(split.val)), "rows_test": int(len(split.test)),
                      "split": split.how})
    log.info("split: %d fit, %d validation, %d test rows (%s)", len(split.fit), len(split.val), len(split.test),
             split.how)

    try:
        spec = FeatureSpec.fit(
            pdf.iloc[split.fit], numeric=numeric, categorical=categorical, imputation=cfg.imputation,
            skew_threshold=cfg.skew_threshold, min_category_count=cfg.min_category_count,
            max_levels=cfg.max_levels, ple_bins=cfg.ple_bins, extrapolation=cfg.extrapolation,
        )
    except ValueError as e:
        raise InputError(f"cannot build features from the training rows: {e}") from None
    log.info("feature spec: %d numeric (%d log-scaled), %d categorical inputs -> %d features",
             len(spec.numeric), sum(f.log for f in spec.numeric), len(spec.categorical), spec.n_features)
    spec.profile = fit_profile(spec, pdf.iloc[split.train])   # what drift at scoring compares with
    x_all = spec.transform(pdf)
    rows, x_test = split.rows(x_all), x_all[split.test]

    from retail_ann.networks import export, keras_session

    keras = keras_session(cfg.seed)
    trained = {}
    targets: dict[str, Any] = {"tasks": list(tasks)}
    if PURCHASE in tasks:
        purchase = PurchaseTarget(purchase_label, cfg, spec.input_blocks)
        trained[PURCHASE] = purchase.fit(keras, rows, y[split.train])
        targets[PURCHASE] = trained[PURCHASE].info
    if SPEND in tasks:
        spend = SpendTarget(spend_label, cfg)
        trained[SPEND] = spend.fit(keras, rows, s[split.train], y[split.train] if PURCHASE in tasks else None)
        targets[SPEND] = trained[SPEND].info
    models = {name: m for t in trained.values() for name, m in t.models.items()}
    histories = {name: h for t in trained.values() for name, h in t.histories.items()}
    weights = {name: export(m) for name, m in models.items()}
    evaluations = {}
    with stage("train.evaluate", log) as ev:   # baselines fitted, test metrics, permutation importance
        if PURCHASE in tasks:
            evaluations[PURCHASE] = purchase.evaluate(trained[PURCHASE], rows, y[split.train], x_test,
                                                      y[split.test], weights)
        if SPEND in tasks:
            evaluations[SPEND] = spend.evaluate(targets, rows, s[split.train], x_test, s[split.test], weights)
        ev.rows = len(split.test)
    metrics: dict[str, Any] = {name: e.metrics for name, e in evaluations.items()}
    importance = {name: e.importance for name, e in evaluations.items() if e.importance}
    if importance:   # each input's permutation importance on the test rows (ROC-AUC fall)
        metrics["importance"] = importance
    plots = {name: e.plots for name, e in evaluations.items()}
    by_segment = segment_metrics(
        masks(pdf.iloc[split.test], cfg.segment_columns),
        *((plots[PURCHASE]["y"], plots[PURCHASE]["p"]["ann"]) if PURCHASE in plots else (None, None)),
        *((plots[SPEND]["y"], plots[SPEND]["p"]["ann"]) if SPEND in plots else (None, None)))
    if by_segment:   # the test metrics by customer segment (new vs returning, location, age band, ...)
        metrics["segments"] = by_segment

    spec.targets = targets
    spec_json = spec.to_json()
    version = content_hash(spec_json, weights)
    metrics["data"] = data_info
    metrics["training"] = {
        "epochs_run": {k: len(h.get("loss", [])) for k, h in histories.items()},
        "seconds": round(time.time() - started, 1),
        "config": asdict(cfg),
        "features": spec.n_features,
    }
    metrics["version"] = version
    metrics["retail_ann_version"] = __version__
    metrics["trained_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    context = {"metrics": metrics, "plots": plots, "histories": histories, "spec": spec, "cfg": cfg,
               "version": version, "data": data_info}
    with stage("train.write", log):   # the Keras models, weights, card, report and its plots
        final = write_artifact(out_dir, spec_json, models, weights, metrics, context, report=cfg.report)
    log.info("model %s written to %s in %.1f s", version, final, time.time() - started)
    return {**metrics, "model_dir": str(final)}


def _usable_rows(pdf: pd.DataFrame, test_pdf: pd.DataFrame | None, cfg: TrainConfig, data_info: dict):
    """The rows that can train or test (training rows first, then ``test_pdf``'s), their labels
    ``y`` and ``s``, the tasks and label names, the numeric and categorical feature columns, and
    which rows are the given test rows (None without ``test_pdf``); the rows left out are counted
    by reason in ``data_info["rows_dropped"]``."""
    if len(pdf) == 0 or (test_pdf is not None and len(test_pdf) == 0):
        raise InputError("the feature table is empty" if len(pdf) == 0 else "the test table is empty")
    if test_pdf is not None:
        missing = [c for c in pdf.columns if c not in test_pdf.columns]
        if missing:
            raise InputError(f"the test table lacks column(s) of the training table: {', '.join(missing[:5])}"
                             + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        pdf = pd.concat([pdf.assign(**{TEST_ROW_COL: False}),
                         test_pdf[list(pdf.columns)].assign(**{TEST_ROW_COL: True})], ignore_index=True)
    else:
        pdf = pdf.copy(deep=False)   # columns may be replaced (text -> numbers); never the caller's frame
    tasks, purchase_label, spend_label = resolve_task(list(pdf.columns), cfg)
    dropped: dict[str, int] = {}
    if CORRUPT_RECORD in pdf.columns:   # a CSV or JSON line the reader could not split into fields
        pdf, _, _ = drop_rows(pdf, None, None, pdf[CORRUPT_RECORD].isna().to_numpy(), MALFORMED_RECORD, dropped)
        pdf = pdf.drop(columns=[CORRUPT_RECORD])
    label_cols = [c for c in (purchase_label, spend_label) if c]
    pdf, _, _ = drop_rows(pdf, None, None, pdf[label_cols].notna().all(axis=1).to_numpy(), "missing label", dropped)
    if cfg.id_col in pdf.columns:   # an id names the group of rows kept on one side of the split
        ids = pdf[cfg.id_col]
        known = (ids.notna() & (ids.astype(str).str.strip() != "")).to_numpy()
        pdf, _, _ = drop_rows(pdf, None, None, known, f"missing {cfg.id_col}", dropped)
    if len(pdf) == 0:
        raise InputError(f"no rows left to train on ({', '.join(f'{n} with {r}' for r, n in dropped.items())})")
    y, s = label_arrays(pdf, purchase_label, spend_label)
    numeric, categorical = feature_columns(pdf, cfg, {purchase_label, spend_label})
    if cfg.imputation == "drop":
        complete = np.ones(len(pdf), dtype=bool)
        for c in numeric:
            complete &= np.isfinite(numeric_values(pdf[c]))
        pdf, y, s = drop_rows(pdf, y, s, complete, "a missing numeric feature (imputation: drop)", dropped)
    data_info["rows_dropped"] = dropped
    given_test = pdf.pop(TEST_ROW_COL).to_numpy() if TEST_ROW_COL in pdf.columns else None
    check_sizes(len(pdf), y, s, tasks)
    return pdf, y, s, tasks, (purchase_label, spend_label), (numeric, categorical), given_test
