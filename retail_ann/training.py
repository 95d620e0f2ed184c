"""Training: a Spark feature table -> a driver sample -> ``FeatureSpec`` -> Keras MLPs -> MODEL_DIR.

Public API
----------
``train_table(spark, features_path, out_dir, cfg, fmt=None, test_path=None, version=None) -> dict``
    Read the table (``retail_ann.inputs.read_table``), refuse partitions whose manifest says their
    labels are incomplete, sample at most ``cfg.sample_rows`` rows to the driver through Arrow
    (deterministic: rows ordered by a hash of id, as_of_date and ``cfg.data_seed``), then
    ``train_frame``. ``test_path``: a table whose rows are the test rows (all of
    ``features_path`` then trains); ``version``: a Delta table as of that commit. Returns the content of ``metrics.json`` plus ``model_dir``
    and ``version``.
``train_frame(pdf, out_dir, cfg, data_info=None, test_pdf=None) -> dict``
    The same from pandas DataFrames already on the driver.
The artifact is read back by ``retail_ann.artifact.load_artifact`` (numpy only, no TensorFlow).

Spend targets (``cfg.spend_target``):
- ``two_stage`` (default): E[spend] = P(buy) x E[spend | buy]. The second network is trained on the
  buyers only, with an exponential output (log link) and the Poisson deviance on spend divided by
  the mean buyer spend: it estimates the conditional mean without the retransformation bias of a
  log target. P(buy) is the purchase network when the purchase label agrees with ``spend > 0``
  (on >= 99 % of rows), else its own gate network ``spend_gate``.
- ``log1p``: one network on standardised ``log1p(spend)`` over all rows, mapped back with Duan's
  smearing factor (estimated on validation rows).
- ``raw``: one network on standardised spend with plain MSE (the seed's approach).
``spec.targets["spend"]`` records ``target``, ``center``, ``scale``, ``smearing`` and ``gate``.

Artifact (written to a temporary directory beside ``out_dir``, then renamed into place):
``feature_spec.json``, ``model_<name>.keras``, ``weights_<name>.npz``, ``metrics.json``,
``model_card.md``, ``report.html`` + ``*.png``, ``VERSION`` (sha256 of the spec and weights, 16 hex
digits; ``load_artifact`` checks it).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retail_ann.config import TrainConfig
from retail_ann.errors import InputError
from retail_ann.artifact import (
    CARD_FILE, CHECKSUM_FILE, METRICS_FILE, PURCHASE, SPEC_FILE, SPEND, SPEND_GATE, VERSION_FILE, content_hash,
    file_checksums, predictions,
)
from retail_ann.model import forward, save_weights_npz
from retail_ann.preprocessing import FeatureSpec
from retail_ann.schemas import (
    AS_OF_DATE, CORRUPT_RECORD, CUSTOMER_ID, FUTURE_SPEND, LABELS, MALFORMED_RECORD, PREDICTED_SPEND, WILL_PURCHASE,
)

log = logging.getLogger(__name__)

MIN_ROWS = 50            # fewer sampled rows than this cannot be split and evaluated
MIN_CLASS_ROWS = 10      # each class of a binary label needs this many rows
MIN_BUYERS = 20          # a spend model needs this many rows with spend > 0
MIN_GROUPS = 10          # distinct ids a grouped split needs
GATE_AGREEMENT = 0.99    # purchase label == (spend > 0) on this share of rows: reuse it as the gate
_HASH_COL = "__sample_hash"
_TEST_COL = "__test_row"     # train_frame's marker of the rows of a given test table
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


# ================================================================================ Spark side
def train_table(spark, features_path: str, out_dir: str, cfg: TrainConfig, fmt: str | None = None,
                test_path: str | None = None, version: int | None = None) -> dict:
    """Train on the feature table at ``features_path`` and write the artifact to ``out_dir``.

    With ``test_path`` the metrics and report are on that table's rows (a later cutoff, or customers
    the caller held out) and every row of ``features_path`` trains; else ``cfg.split`` of them are
    held out."""
    from retail_ann.inputs import read_table
    from retail_ann.io import is_local, partition_manifests, upload_dir

    paths = {"train": features_path, **({"test": test_path} if test_path else {})}
    windows = {k: label_windows(partition_manifests(spark, p, AS_OF_DATE), cfg) for k, p in paths.items()}
    frames = {k: sample_to_driver(read_table(spark, p, fmt, version if k == "train" else None), cfg)
              for k, p in paths.items()}
    pdf, data_info = frames["train"]
    data_info["source"] = str(features_path)
    if windows["train"]:
        data_info["label_windows"] = windows["train"]
    test_pdf = None
    if test_path:
        test_pdf, test_info = frames["test"]
        data_info["test_source"] = str(test_path)
        data_info["test_rows_total"] = test_info["rows_total"]
        if windows["test"]:
            data_info["test_label_windows"] = windows["test"]
    if is_local(out_dir, spark):
        return train_frame(pdf, out_dir, cfg, data_info=data_info, test_pdf=test_pdf)
    with tempfile.TemporaryDirectory(prefix="retail-ann-model-") as tmp:   # hdfs://, s3a://: built here, copied
        result = train_frame(pdf, f"{tmp}/model", cfg, data_info=data_info, test_pdf=test_pdf)
        upload_dir(spark, Path(tmp) / "model", out_dir, last=VERSION_FILE)
    log.info("model directory copied to %s", out_dir)
    return {**result, "model_dir": str(out_dir)}


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
    if len(pdf) == 0 or (test_pdf is not None and len(test_pdf) == 0):
        raise InputError("the feature table is empty" if len(pdf) == 0 else "the test table is empty")
    if test_pdf is not None:
        missing = [c for c in pdf.columns if c not in test_pdf.columns]
        if missing:
            raise InputError(f"the test table lacks column(s) of the training table: {', '.join(missing[:5])}"
                             + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        pdf = pd.concat([pdf.assign(**{_TEST_COL: False}), test_pdf[list(pdf.columns)].assign(**{_TEST_COL: True})],
                        ignore_index=True)
    else:
        pdf = pdf.copy(deep=False)   # columns may be replaced (text -> numbers); never the caller's frame
    tasks, purchase_label, spend_label = resolve_task(list(pdf.columns), cfg)
    dropped: dict[str, int] = {}
    if CORRUPT_RECORD in pdf.columns:   # a CSV or JSON line the reader could not split into fields
        pdf, _, _ = _drop_rows(pdf, None, None, pdf[CORRUPT_RECORD].isna().to_numpy(), MALFORMED_RECORD, dropped)
        pdf = pdf.drop(columns=[CORRUPT_RECORD])
    label_cols = [c for c in (purchase_label, spend_label) if c]
    pdf, _, _ = _drop_rows(pdf, None, None, pdf[label_cols].notna().all(axis=1).to_numpy(), "missing label", dropped)
    if cfg.id_col in pdf.columns:   # an id names the group of rows kept on one side of the split
        ids = pdf[cfg.id_col]
        known = (ids.notna() & (ids.astype(str).str.strip() != "")).to_numpy()
        pdf, _, _ = _drop_rows(pdf, None, None, known, f"missing {cfg.id_col}", dropped)
    if len(pdf) == 0:
        raise InputError(f"no rows left to train on ({', '.join(f'{n} with {r}' for r, n in dropped.items())})")
    y, s = _labels(pdf, purchase_label, spend_label)
    numeric, categorical = _feature_columns(pdf, cfg, {purchase_label, spend_label})
    if cfg.imputation == "drop":
        complete = np.ones(len(pdf), dtype=bool)
        for c in numeric:
            complete &= np.isfinite(pd.to_numeric(pdf[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan))
        pdf, y, s = _drop_rows(pdf, y, s, complete, "a missing numeric feature (imputation: drop)", dropped)
    data_info["rows_dropped"] = dropped
    given_test = pdf.pop(_TEST_COL).to_numpy() if _TEST_COL in pdf.columns else None
    _check_sizes(len(pdf), y, s, tasks)
    split = _split(pdf, y, s, cfg, given_test)
    fit_idx, val_idx, test_idx, train_idx = split["fit"], split["val"], split["test"], split["train"]
    data_info.update({"rows_used": int(len(pdf)), "rows_fit": int(len(fit_idx)),
                      "rows_validation": int(len(val_idx)), "rows_test": int(len(test_idx)),
                      "split": split["how"]})
    log.info("split: %d fit, %d validation, %d test rows (%s)", len(fit_idx), len(val_idx), len(test_idx), split["how"])

    try:
        spec = FeatureSpec.fit(
            pdf.iloc[fit_idx], numeric=numeric, categorical=categorical, imputation=cfg.imputation,
            skew_threshold=cfg.skew_threshold, min_category_count=cfg.min_category_count,
            max_levels=cfg.max_levels, ple_bins=cfg.ple_bins,
        )
    except ValueError as e:
        raise InputError(f"cannot build features from the training rows: {e}") from None
    log.info("feature spec: %d numeric (%d log-scaled), %d categorical inputs -> %d features",
             len(spec.numeric), sum(f.log for f in spec.numeric), len(spec.categorical), spec.n_features)
    x_all = spec.transform(pdf)
    rows = TrainingRows(x_all[train_idx], split["fold"], split["groups"])
    x_test = x_all[test_idx]

    keras = _keras(cfg.seed)
    models: dict[str, Any] = {}
    histories: dict[str, dict] = {}
    targets: dict[str, Any] = {"tasks": list(tasks)}
    metrics: dict[str, Any] = {}
    plots: dict[str, Any] = {}

    if PURCHASE in tasks:
        y_train, y_test = y[train_idx], y[test_idx]
        model, hist, p_val = _train_classifier(keras, PURCHASE, rows, y_train, cfg)
        models[PURCHASE], histories[PURCHASE] = model, hist
        p_test = forward(_export(model), x_test)
        from retail_ann.metrics import best_f1_threshold, classification_metrics, purchase_baselines

        if cfg.threshold is not None:
            thr, rule = float(cfg.threshold), "fixed by configuration"
        else:
            thr, rule = best_f1_threshold(y_train[rows.validation], p_val)[0], "max F1 on validation rows"
        targets[PURCHASE] = {"label": purchase_label, "threshold": round(float(thr), 6), "threshold_rule": rule,
                             "positive_rate": round(float(y_train[rows.fit].mean()), 6)}
        base, base_p = purchase_baselines(rows.x, y_train, rows.folds, x_test, y_test, cfg.seed)
        metrics[PURCHASE] = {"ann": classification_metrics(y_test, p_test, thr), **base}
        plots[PURCHASE] = {"y": y_test, "p": {"ann": p_test, **base_p}}
        log.info("purchase test: ROC-AUC %.4f (logistic %.4f), F1 %.4f at %.3f (best %.4f)",
                 metrics[PURCHASE]["ann"]["roc_auc"] or float("nan"),
                 metrics[PURCHASE]["baseline_logistic"]["roc_auc"] or float("nan"),
                 metrics[PURCHASE]["ann"]["f1"], thr, metrics[PURCHASE]["ann"]["best_f1"])

    if SPEND in tasks:
        s_train, s_test = s[train_idx], s[test_idx]
        info, spend_models, spend_hist = _train_spend(keras, rows, s_train, y_train if PURCHASE in tasks else None,
                                                      models, cfg)
        info["label"] = spend_label
        models.update(spend_models)
        histories.update(spend_hist)
        targets[SPEND] = info
        weights_now = {k: _export(m) for k, m in models.items()}
        pred_test = predictions(targets, x_test, lambda name, x: forward(weights_now[name], x),
                                (SPEND,))[PREDICTED_SPEND]
        from retail_ann.metrics import regression_metrics, spend_baselines

        base, base_p = spend_baselines(rows.x[rows.learned], s_train[rows.learned], x_test, s_test)
        metrics[SPEND] = {"ann": regression_metrics(s_test, pred_test), **base}
        plots[SPEND] = {"y": s_test, "p": {"ann": pred_test, **base_p}}
        log.info("spend test: R2 %.4f (ridge %.4f, mean %.4f), MAE %.2f",
                 metrics[SPEND]["ann"]["r2"] or float("nan"), metrics[SPEND]["baseline_ridge"]["r2"] or float("nan"),
                 metrics[SPEND]["baseline_mean"]["r2"] or float("nan"), metrics[SPEND]["ann"]["mae"])

    spec.targets = targets
    weights = {k: _export(m) for k, m in models.items()}
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
    context = {"metrics": metrics, "plots": plots, "histories": histories, "spec": spec, "cfg": cfg,
               "version": version, "data": data_info}
    final = _write_artifact(out_dir, spec_json, models, weights, metrics, context, cfg)
    log.info("model %s written to %s in %.1f s", version, final, time.time() - started)
    return {**metrics, "model_dir": str(final)}


# ------------------------------------------------------------------------------- task & labels
def resolve_task(columns: list[str], cfg: TrainConfig) -> tuple[tuple[str, ...], str | None, str | None]:
    """(tasks, purchase label, spend label) for this table and configuration."""
    purchase_label = cfg.label or WILL_PURCHASE
    spend_label = cfg.spend_label or FUTURE_SPEND
    has_p, has_s = purchase_label in columns, spend_label in columns
    task = cfg.task
    if task == "auto":
        if cfg.label:
            task = "purchase"
        elif has_p and has_s:
            task = "both"
        elif has_p:
            task = "purchase"
        elif has_s:
            task = "spend"
        else:
            raise InputError(f"no label column: the table has neither {purchase_label} nor {spend_label}; "
                             "name the binary target with --label")
    tasks = {"purchase": (PURCHASE,), "spend": (SPEND,), "both": (PURCHASE, SPEND)}[task]
    if PURCHASE in tasks and not has_p:
        raise InputError(f"label column {purchase_label} not found; columns: {', '.join(columns)}")
    if SPEND in tasks and not has_s:
        raise InputError(f"spend label column {spend_label} not found; columns: {', '.join(columns)}")
    return tasks, (purchase_label if PURCHASE in tasks else None), (spend_label if SPEND in tasks else None)


def binary_label(values: pd.Series, name: str) -> np.ndarray:
    """A binary label as int8 0/1: booleans, numbers 0/1, or strings true/false, yes/no, 1/0."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(bool).to_numpy().astype(np.int8)
    if pd.api.types.is_numeric_dtype(values):
        v = values.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isin(v, (0.0, 1.0))
        if bad.any():
            raise InputError(f"label {name} is not binary: found values {_sample_values(values[bad])}")
        return v.astype(np.int8)
    text = values.map(lambda v: str(v).strip().lower())
    is_true, is_false = text.isin(_TRUE), text.isin(_FALSE)
    if not (is_true | is_false).all():
        raise InputError(f"label {name} is not binary: found values {_sample_values(values[~(is_true | is_false)])}")
    return is_true.to_numpy().astype(np.int8)


def _sample_values(values: pd.Series, k: int = 5) -> str:
    uniq = list(dict.fromkeys(values.astype(str).tolist()))
    return ", ".join(uniq[:k]) + (", ..." if len(uniq) > k else "")


def _drop_rows(pdf: pd.DataFrame, y, s, keep: np.ndarray, reason: str, dropped: dict[str, int]):
    """``pdf``, ``y`` and ``s`` without the rows not in ``keep``; their count goes to ``dropped``
    under ``reason`` (metrics.json and the model card report it) and to the log."""
    if keep.all():
        return pdf, y, s
    dropped[reason] = int((~keep).sum())
    log.warning("dropping %d of %d rows with %s", dropped[reason], len(keep), reason)
    return pdf[keep].reset_index(drop=True), _take(y, keep), _take(s, keep)


def _labels(pdf: pd.DataFrame, purchase_label: str | None, spend_label: str | None):
    """(purchase label as 0/1, spend label as non-negative floats) of rows that all have labels."""
    y = binary_label(pdf[purchase_label], purchase_label) if purchase_label else None
    s = None
    if spend_label:
        raw = pdf[spend_label]
        if not (pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw)):
            raw = pd.to_numeric(raw, errors="coerce")
            if raw.isna().any():
                raise InputError(f"spend label {spend_label} is not numeric")
        s = raw.to_numpy(dtype=float)
        if not np.isfinite(s).all():
            raise InputError(f"spend label {spend_label} has non-finite values")
        if (s < 0).any():
            log.warning("spend label %s: %d negative values clipped to 0", spend_label, int((s < 0).sum()))
            s = np.maximum(s, 0.0)
    return y, s


def _take(a, mask):
    return None if a is None else a[mask]


def _check_sizes(n: int, y, s, tasks) -> None:
    if n < MIN_ROWS:
        raise InputError(f"too few rows to train: {n} (need at least {MIN_ROWS})")
    if y is not None:
        pos = int(y.sum())
        if min(pos, n - pos) < MIN_CLASS_ROWS:
            raise InputError(f"too few rows of one class to train a classifier: {pos} positive, {n - pos} negative "
                             f"(need at least {MIN_CLASS_ROWS} of each)")
    if s is not None and int((s > 0).sum()) < MIN_BUYERS:
        raise InputError(f"too few rows with positive spend: {int((s > 0).sum())} (need at least {MIN_BUYERS})")


def _feature_columns(pdf: pd.DataFrame, cfg: TrainConfig, labels: set) -> tuple[list[str], list[str]]:
    """Numeric and categorical input columns; converts numeric-looking text columns (CSV) in place."""
    missing_cat = [c for c in cfg.categorical if c not in pdf.columns]
    if missing_cat:
        raise InputError(f"categorical column(s) not in the table: {', '.join(missing_cat)}")
    unknown_excl = [c for c in cfg.exclude if c not in pdf.columns]
    if unknown_excl:
        log.warning("exclude names column(s) not in the table: %s", ", ".join(unknown_excl))
    skip = set(LABELS) | {c for c in labels if c} | {cfg.id_col, CUSTOMER_ID, AS_OF_DATE, _TEST_COL} | set(cfg.exclude)
    numeric, categorical = [], []
    for c in pdf.columns:
        if c in skip:
            continue
        col = pdf[c]
        if c in cfg.categorical:
            categorical.append(c)
        elif pd.api.types.is_bool_dtype(col):
            categorical.append(c)
        elif pd.api.types.is_numeric_dtype(col):
            numeric.append(c)
        elif col.dtype == object or pd.api.types.is_string_dtype(col):
            kind = _object_kind(col)
            if kind == "numeric":
                pdf[c] = pd.to_numeric(col, errors="coerce")
                numeric.append(c)
            elif kind == "categorical":
                categorical.append(c)
            else:
                log.info("column %s (%s) is not a feature type: left out", c, kind)
        else:
            log.info("column %s (%s) is not a feature type: left out", c, col.dtype)
    if not numeric and not categorical:
        raise InputError("no feature columns: every column is an id, a label, as_of_date or excluded")
    return numeric, categorical


def _object_kind(col: pd.Series) -> str:
    """``numeric`` (numbers, or text that all parses as numbers: CSV), ``categorical`` (text,
    booleans) or the Python type name of values that are neither (dates, bytes)."""
    nonnull = col.dropna()
    if len(nonnull) == 0:
        return "entirely missing"
    first = nonnull.iloc[0]
    if isinstance(first, (bool, np.bool_)):
        return "categorical"
    if isinstance(first, str):
        text = nonnull.astype(str).str.strip()
        parsed = pd.to_numeric(text[text != ""], errors="coerce")
        return "numeric" if len(parsed) and parsed.notna().all() else "categorical"
    if isinstance(first, (int, float, np.number)) or type(first).__name__ == "Decimal":
        return "numeric"
    return type(first).__name__


@dataclass(frozen=True)
class TrainingRows:
    """The training rows (fit and validation, in row order) of a network, and which of them each
    ensemble member validates on.

    ``fold[i]`` is row i's fold: fold 0 holds the ``validation_split`` rows, the others the fit
    rows. Member m validates on fold ``m % groups`` and fits the rest. With
    ``ensemble_validation: shared`` (or one member) ``groups`` is 1: every member holds back fold 0
    and the fit rows are one fold 1. With ``folds`` the fit rows are cut into folds of fold 0's
    size and ``groups`` is min(members, folds): each member holds back its own fold and fits the
    others, so the merged ensemble has learned from every training row.
    """

    x: np.ndarray
    fold: np.ndarray
    groups: int

    @property
    def fit(self) -> np.ndarray:
        """The rows outside fold 0 (the shared fit rows): the prior and target statistics come
        from them, as the feature spec does."""
        return self.fold != 0

    @property
    def validation(self) -> np.ndarray:
        """Rows some member validates on (out-of-fold predictions exist for them)."""
        return self.fold < self.groups

    @property
    def folds(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(fit, validation)`` row masks of each group of members: validation on fold g, fit on
        the rest (with a shared fold, fold 0 against the fit rows)."""
        return [(self.fold != g, self.fold == g) for g in range(self.groups)]

    @property
    def learned(self) -> np.ndarray:
        """Rows some member fits (with ``folds``, all of them); the baselines fit on the same rows."""
        return np.logical_or.reduce([fit for fit, _ in self.folds])

    def subset(self, mask: np.ndarray) -> "TrainingRows":
        return TrainingRows(self.x[mask], self.fold[mask], self.groups)


def _split(pdf: pd.DataFrame, y, s, cfg: TrainConfig, given_test: np.ndarray | None = None) -> dict:
    """Indices of fit / validation / test rows, and the training rows' folds (``TrainingRows``).
    The test rows are ``given_test`` when the caller has them, else ``cfg.split`` of the rows.
    Stratified on the purchase label (or spend > 0); grouped by id when an id repeats (several
    as_of_dates), so a customer is on one side only (of the fit and validation rows alone when the
    test rows are given: a later cutoff holds the same customers)."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedKFold, train_test_split

    n = len(pdf)
    strat = y if y is not None else (s > 0).astype(np.int8)
    idx = np.arange(n)
    ids = pdf[cfg.id_col].astype(str).to_numpy() if cfg.id_col in pdf.columns else None
    n_ids = len(np.unique(ids)) if ids is not None else n
    if n_ids < MIN_GROUPS:
        raise InputError(f"only {n_ids} distinct {cfg.id_col} values in {n} rows: rows of one {cfg.id_col} stay "
                         f"on one side of the split, so it needs at least {MIN_GROUPS} (--id-col names the column)")
    try:
        if given_test is not None:
            train_idx, test_idx, how = idx[~given_test], idx[given_test], "test rows from the test table"
            grouped = ids is not None and len(np.unique(ids[train_idx])) < len(train_idx)
        else:
            grouped = n_ids < n
            if grouped:
                gss = GroupShuffleSplit(n_splits=1, test_size=cfg.split, random_state=cfg.data_seed)
                train_idx, test_idx = next(gss.split(idx, groups=ids))
            else:
                train_idx, test_idx = train_test_split(idx, test_size=cfg.split, stratify=strat,
                                                       random_state=cfg.data_seed)
            how = f"grouped by {cfg.id_col}" if grouped else "stratified"
        if grouped:
            gss_val = GroupShuffleSplit(n_splits=1, test_size=cfg.validation_split, random_state=cfg.data_seed + 1)
            f, v = next(gss_val.split(train_idx, groups=ids[train_idx]))
            fit_idx, val_idx = train_idx[f], train_idx[v]
        else:
            fit_idx, val_idx = train_test_split(train_idx, test_size=cfg.validation_split,
                                                stratify=strat[train_idx], random_state=cfg.data_seed)
    except ValueError as e:
        raise InputError(f"cannot split {n} rows into training, validation and test sets: {e}") from None
    for name, part in (("validation", val_idx), ("test", test_idx), ("fit", fit_idx)):
        if len(np.unique(strat[part])) < 2:
            raise InputError(f"the {name} rows hold only one class; more rows are needed")
    fit_idx, val_idx = np.sort(fit_idx), np.sort(val_idx)
    train_idx = np.sort(np.concatenate([fit_idx, val_idx]))
    fold = np.where(np.isin(train_idx, val_idx), 0, 1)
    groups = 1
    n_folds = max(2, round(1 / cfg.validation_split))
    if cfg.ensemble_validation == "folds" and cfg.ensemble > 1:
        on_fit = fold == 1
        if n_folds > 2:   # else the fit rows are the one other fold
            cut = (StratifiedGroupKFold(n_folds - 1, shuffle=True, random_state=cfg.data_seed) if grouped
                   else StratifiedKFold(n_folds - 1, shuffle=True, random_state=cfg.data_seed))
            fit_fold = np.empty(int(on_fit.sum()), dtype=int)
            try:
                for f, (_, part) in enumerate(cut.split(train_idx[on_fit], strat[train_idx[on_fit]],
                                                        ids[train_idx[on_fit]] if grouped else None)):
                    fit_fold[part] = f + 1
            except ValueError as e:
                raise InputError(f"cannot cut the fit rows into {n_folds - 1} validation folds: {e}") from None
            fold[on_fit] = fit_fold
        groups = min(cfg.ensemble, n_folds)
        for f in range(1, groups):
            if len(np.unique(strat[train_idx[fold == f]])) < 2:
                raise InputError(f"validation fold {f} holds only one class; more rows are needed "
                                 "(or ensemble_validation: shared)")
        how += f"; members hold back {groups} of {n_folds} folds"
    return {"fit": fit_idx, "val": val_idx, "test": np.sort(test_idx), "train": train_idx, "fold": fold,
            "groups": groups, "how": how}


# ------------------------------------------------------------------------------------ Keras
def _keras(seed: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF C++ chatter; Python errors still raise
    import keras

    keras.utils.set_random_seed(int(seed))
    try:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - another backend
        pass
    return keras


def _epoch_logger(keras, name: str, epochs: int, members: int):
    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            parts = [f"{k}={logs[k] / (members if k.endswith('loss') else 1):.4f}"
                     for k in ("loss", "val_loss", "val_auc") if k in logs]
            log.info("%s epoch %d/%d %s (%.1f s)", name, epoch + 1, epochs, " ".join(parts), time.time() - self._t)

    return EpochLog()


def _fit(keras, name: str, model, rows: TrainingRows, target: np.ndarray, cfg: TrainConfig,
         sample_weight: np.ndarray | None = None) -> dict:
    """Fit ``model`` (``cfg.ensemble`` members, each given the same targets) on ``rows`` with early
    stopping on the members' validation loss. The returned history holds the members' mean loss.

    With ``cfg.ema_momentum`` the averaged weights are in the model at each epoch's end: they are
    validated, early stopping keeps the best of them, and they are what the fit leaves."""
    k = cfg.ensemble
    callbacks = [_epoch_logger(keras, name, cfg.epochs, k)]
    if cfg.ema_momentum > 0:   # before EarlyStopping, which must see the averaged weights
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if cfg.patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                                       restore_best_weights=True))
    target = target.astype(np.float32)
    if rows.groups == 1:   # every member fits the same rows and validates on fold 0
        fit, val = rows.fit, ~rows.fit
        x_fit, t_fit = rows.x[fit], target[fit]
        weights = None if sample_weight is None else sample_weight[fit]
        validation = (rows.x[val], target[val])
        if k > 1:
            t_fit, validation = [t_fit] * k, (validation[0], [validation[1]] * k)
            weights = None if weights is None else [weights] * k
    else:   # member m sees every row; weight 0 hides its own fold, which is its validation set
        n, val = len(target), rows.validation
        base = np.ones(n, np.float32) if sample_weight is None else sample_weight.astype(np.float32)
        weights, val_weights, folds = [], [], rows.folds
        for m in range(k):
            own = folds[m % rows.groups][1]
            # scaled so each member's loss is the mean over its own rows, as with a shared fold
            weights.append(np.where(own, 0.0, base).astype(np.float32) * np.float32(n / (~own).sum()))
            val_weights.append(own[val].astype(np.float32) * np.float32(val.sum() / own.sum()))
        x_fit, t_fit = rows.x, [target] * k
        validation = (rows.x[val], [target[val]] * k, val_weights)
    hist = model.fit(x_fit, t_fit, validation_data=validation, sample_weight=weights,
                     epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=callbacks, verbose=0, shuffle=True)
    history = {key: [float(v) / (k if key.endswith("loss") else 1) for v in vals]
               for key, vals in hist.history.items() if key in ("loss", "val_loss", "auc", "val_auc")}
    if cfg.patience > 0 and "val_loss" in history:
        best = int(np.argmin(history["val_loss"]))
        log.info("%s: best epoch %d of %d (val_loss %.4f)", name, best + 1, len(history["val_loss"]),
                 history["val_loss"][best])
    return history


def _validation_predictions(model, rows: TrainingRows) -> np.ndarray:
    """The ensemble's predictions for ``rows.validation``, each row by the members that did not fit
    it (out-of-fold): with a shared fold, every member (the merged model)."""
    from retail_ann.model import member_weights

    k = len(model.outputs)
    units = int(model.outputs[0].shape[-1])   # forward gives (n,) for one output unit, else (n, units)
    out = np.empty((int(rows.validation.sum()),) + ((units,) if units > 1 else ()), np.float32)
    for g, (_, held) in enumerate(rows.folds):
        members = [m for m in range(k) if m % rows.groups == g]
        out[held[rows.validation]] = forward(member_weights(model, members), rows.x[held])
    return out


def _train_classifier(keras, name: str, rows: TrainingRows, y: np.ndarray, cfg: TrainConfig):
    """(merged model, history, probabilities on ``rows.validation``)."""
    from retail_ann.model import build_mlp, merge_members, output_layers

    y_fit = y[rows.fit]
    prior = float(np.clip(y_fit.mean(), 1e-4, 1 - 1e-4))
    sample_weight = None
    if cfg.class_weight:
        n1 = y_fit.sum()
        n0 = len(y_fit) - n1
        weights = {0: len(y_fit) / (2.0 * n0), 1: len(y_fit) / (2.0 * n1)}
        sample_weight = np.where(y == 1, weights[1], weights[0]).astype(np.float32)
    model = build_mlp(rows.x.shape[1], cfg.hidden_units, cfg.dropout, "sigmoid", cfg.learning_rate,
                      l2=cfg.l2, output_bias=math.log(prior / (1 - prior)), seed=cfg.seed, members=cfg.ensemble,
                      ema_momentum=cfg.ema_momentum)
    history = _fit(keras, name, model, rows, y, cfg, sample_weight)
    if sample_weight is not None:
        # Class weights shift the learned log-odds by log(w1 / w0); shift them back so the
        # probabilities stay calibrated to the real positive rate.
        shift = np.float32(math.log(weights[1] / weights[0]))
        for out in output_layers(model):
            kernel, bias = out.get_weights()
            out.set_weights([kernel, bias - shift])
    p_val = _validation_predictions(model, rows)
    return merge_members(model), history, p_val


def _train_regressor(keras, name: str, rows: TrainingRows, target: np.ndarray, cfg: TrainConfig,
                     output: str = "linear", output_bias: list[float] | None = None):
    """(merged model, history, predictions on ``rows.validation``)."""
    from retail_ann.model import build_mlp, merge_members

    model = build_mlp(rows.x.shape[1], cfg.hidden_units, cfg.dropout, output, cfg.learning_rate,
                      l2=cfg.l2, output_bias=output_bias, seed=cfg.seed + 7, members=cfg.ensemble,
                      ema_momentum=cfg.ema_momentum)
    history = _fit(keras, name, model, rows, target, cfg)
    return merge_members(model), history, _validation_predictions(model, rows)


def _train_spend(keras, rows: TrainingRows, s: np.ndarray, y: np.ndarray | None, models: dict, cfg: TrainConfig):
    """Train the spend network(s) on ``rows`` with spend ``s`` (and purchase label ``y``, of the
    same training rows: whether the purchase net can be the gate is decided without the test
    rows); returns (spend info for the spec, new models, histories)."""
    info: dict[str, Any] = {"target": cfg.spend_target}
    new_models: dict[str, Any] = {}
    hist: dict[str, dict] = {}
    fit = rows.fit
    if cfg.spend_target == "raw":
        center, scale = float(s[fit].mean()), float(s[fit].std() or 1.0)
        model, h, _ = _train_regressor(keras, SPEND, rows, (s - center) / scale, cfg)
        info.update(center=center, scale=scale, smearing=1.0)
    elif cfg.spend_target == "log1p":
        t = np.log1p(s)
        center, scale = float(t[fit].mean()), float(t[fit].std() or 1.0)
        model, h, pred_val = _train_regressor(keras, SPEND, rows, (t - center) / scale, cfg)
        resid = t[rows.validation] - (center + scale * pred_val)
        info.update(center=center, scale=scale, smearing=_smearing(resid))
    elif cfg.spend_target == "ziln":
        buy = s > 0
        _check_buyers(buy, rows)
        scale = float(s[buy & fit].mean())
        log_s = np.log(s[buy & fit] / scale)
        prior = float(np.clip(buy[fit].mean(), 1e-4, 1 - 1e-4))
        sigma = max(float(log_s.std()), 0.05)
        bias = [math.log(prior / (1 - prior)), float(log_s.mean()), sigma + math.log(-math.expm1(-sigma))]
        model, h, _ = _train_regressor(keras, SPEND, rows, s / scale, cfg, output="ziln", output_bias=bias)
        info.update(center=0.0, scale=scale, smearing=1.0)
    else:  # two_stage
        buy = s > 0
        _check_buyers(buy, rows)
        gate = None
        if PURCHASE in models and y is not None:
            agree = float(np.mean(y == (s > 0)))
            if agree >= GATE_AGREEMENT:
                gate = PURCHASE
            else:
                log.info("purchase label agrees with spend > 0 on %.1f%% of rows: training a separate gate", 100 * agree)
        if gate is None:
            gate = SPEND_GATE
            gm, gh, _ = _train_classifier(keras, SPEND_GATE, rows, buy.astype(np.int8), cfg)
            new_models[SPEND_GATE], hist[SPEND_GATE] = gm, gh
        scale = float(s[buy & fit].mean())
        model, h, _ = _train_regressor(keras, SPEND, rows.subset(buy), s[buy] / scale, cfg, output="exponential")
        info.update(center=0.0, scale=scale, smearing=1.0, gate=gate)
    new_models[SPEND], hist[SPEND] = model, h
    info = {k: (round(v, 8) if isinstance(v, float) else v) for k, v in info.items()}
    return info, new_models, hist


def _check_buyers(buy: np.ndarray, rows: TrainingRows) -> None:
    short = [g for g in range(rows.groups) if (buy & (rows.fold == g)).sum() < 2]
    if (buy & rows.fit).sum() < MIN_BUYERS or short:
        raise InputError(f"too few rows with positive spend to train the spend model: {int((buy & rows.fit).sum())} "
                         f"(need at least {MIN_BUYERS}, and 2 in each validation fold)")


def _smearing(resid: np.ndarray) -> float:
    """Duan's smearing factor mean(exp(residual)) for mapping a log-scale prediction back."""
    if len(resid) == 0:
        return 1.0
    return float(np.mean(np.exp(np.clip(resid, -20, 20))))


def _export(model) -> dict[str, np.ndarray]:
    from retail_ann.model import export_weights

    return export_weights(model)


# ---------------------------------------------------------------------------------- artifact
def _write_artifact(out_dir: str, spec_json: str, models: dict, weights: dict, metrics: dict,
                    context: dict, cfg: TrainConfig) -> Path:
    from retail_ann.io import is_local

    if not is_local(str(out_dir)):
        raise InputError(f"the model directory must be a local path, not {out_dir}")
    out = Path(str(out_dir).removeprefix("file://").removeprefix("file:")).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"model directory {out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / SPEC_FILE).write_text(spec_json)
        for name, model in models.items():
            model.save(tmp / f"model_{name}.keras")
            save_weights_npz(weights[name], tmp / f"weights_{name}.npz")
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=False, default=_json_default))
        from retail_ann import report

        (tmp / CARD_FILE).write_text(report.model_card(context))
        if cfg.report:
            report.write_report(tmp, context)
        scored_files = [SPEC_FILE, *[f"{kind}_{name}.{ext}" for name in models
                                     for kind, ext in (("model", "keras"), ("weights", "npz"))]]
        (tmp / CHECKSUM_FILE).write_text(json.dumps(file_checksums(tmp, scored_files), indent=1) + "\n")
        (tmp / VERSION_FILE).write_text(context["version"] + "\n")
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``; an existing ``out`` is swapped out first, then removed."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        try:
            os.rename(new, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, out)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
