"""What a training table holds: the tasks its label columns allow, the labels as numbers, the
feature columns, and the rows that cannot train (left out, counted by reason)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from retail_ann.config import TrainConfig
from retail_ann.errors import InputError
from retail_ann.schemas import AS_OF_DATE, CUSTOMER_ID, FUTURE_SPEND, LABELS, WILL_PURCHASE
from retail_ann.targets import MIN_BUYERS, PURCHASE, SPEND

log = logging.getLogger(__name__)

MIN_ROWS = 50            # fewer sampled rows than this cannot be split and evaluated
MIN_CLASS_ROWS = 10      # each class of a binary label needs this many rows
TEST_ROW_COL = "__test_row"   # train_frame's marker of the rows of a given test table
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


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


def drop_rows(pdf: pd.DataFrame, y, s, keep: np.ndarray, reason: str, dropped: dict[str, int]):
    """``pdf``, ``y`` and ``s`` without the rows not in ``keep``; their count goes to ``dropped``
    under ``reason`` (metrics.json and the model card report it) and to the log."""
    if keep.all():
        return pdf, y, s
    dropped[reason] = int((~keep).sum())
    log.warning("dropping %d of %d rows with %s", dropped[reason], len(keep), reason)
    return pdf[keep].reset_index(drop=True), _take(y, keep), _take(s, keep)


def label_arrays(pdf: pd.DataFrame, purchase_label: str | None, spend_label: str | None):
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


def check_sizes(n: int, y, s, tasks) -> None:
    if n < MIN_ROWS:
        raise InputError(f"too few rows to train: {n} (need at least {MIN_ROWS})")
    if y is not None:
        pos = int(y.sum())
        if min(pos, n - pos) < MIN_CLASS_ROWS:
            raise InputError(f"too few rows of one class to train a classifier: {pos} positive, {n - pos} negative "
                             f"(need at least {MIN_CLASS_ROWS} of each)")
    if s is not None and int((s > 0).sum()) < MIN_BUYERS:
        raise InputError(f"too few rows with positive spend: {int((s > 0).sum())} (need at least {MIN_BUYERS})")


def feature_columns(pdf: pd.DataFrame, cfg: TrainConfig, label_cols: set) -> tuple[list[str], list[str]]:
    """Numeric and categorical input columns; converts numeric-looking text columns (CSV) in place."""
    missing_cat = [c for c in cfg.categorical if c not in pdf.columns]
    if missing_cat:
        raise InputError(f"categorical column(s) not in the table: {', '.join(missing_cat)}")
    unknown_excl = [c for c in cfg.exclude if c not in pdf.columns]
    if unknown_excl:
        log.warning("exclude names column(s) not in the table: %s", ", ".join(unknown_excl))
    skip = set(LABELS) | {c for c in label_cols if c} | {cfg.id_col, CUSTOMER_ID, AS_OF_DATE, TEST_ROW_COL} | set(cfg.exclude)
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
