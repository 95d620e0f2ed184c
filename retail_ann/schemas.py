"""The one home of column names and table schemas, and of row validation against them.

Every other module imports column names from here rather than repeating string literals.
Validation splits a raw table into conforming rows (cast to the schema) and rejected rows
that carry a ``reject_reason``; nothing is dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retail_ann.errors import InputError

# --- raw log columns -------------------------------------------------------------------------
CUSTOMER_ID = "customer_id"
ORDER_ID = "order_id"
TS = "ts"
PRODUCT_CATEGORY = "product_category"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"
LINE_ID = "line_id"       # optional: tells apart lines of one order alike in every other column
SESSION_ID = "session_id"
PAGE_TYPE = "page_type"
DURATION_S = "duration_s"
AGE = "age"
GENDER = "gender"
LOCATION = "location"
SIGNUP_DATE = "signup_date"

PAGE_TYPES = ("home", "category", "product", "search", "cart", "checkout")

# --- feature table ---------------------------------------------------------------------------
AS_OF_DATE = "as_of_date"
WILL_PURCHASE = "will_purchase"
FUTURE_SPEND = "future_spend"
LABELS = (WILL_PURCHASE, FUTURE_SPEND)

# --- predictions -----------------------------------------------------------------------------
PURCHASE_PROBABILITY = "purchase_probability"
PREDICTED_PURCHASE = "predicted_purchase"   # the decision at the stored threshold (the label is will_purchase)
PREDICTED_SPEND = "predicted_spend"
MODEL_VERSION = "model_version"
SCORED_AT = "scored_at"


def reason_columns(k: int) -> list[tuple[str, str]]:
    """``(reason_i, reason_i_contribution)`` for i = 1..k: ``score --explain K``'s columns, the
    feature table column that raised the purchase score i-th most and by how much (logit scale)."""
    return [(f"reason_{i}", f"reason_{i}_contribution") for i in range(1, k + 1)]

# --- quarantine ------------------------------------------------------------------------------
REJECT_REASON = "reject_reason"
CORRUPT_RECORD = "_corrupt_record"   # Spark's PERMISSIVE JSON/CSV reader puts a malformed line here
MALFORMED_RECORD = "malformed record"   # the reason given to such a line (features, train, score)


@dataclass(frozen=True)
class TableSchema:
    """A raw input table: its Spark schema, which columns must be present in the input, and the
    column that dates its rows (the manifests record its first and last value)."""

    name: str
    struct: T.StructType
    required: tuple[str, ...]
    time_column: str | None = None

    @property
    def columns(self) -> list[str]:
        return self.struct.fieldNames()


TRANSACTIONS = TableSchema(
    name="transactions",
    struct=T.StructType([
        T.StructField(CUSTOMER_ID, T.StringType(), False),
        T.StructField(ORDER_ID, T.StringType(), False),
        T.StructField(TS, T.TimestampType(), False),
        T.StructField(PRODUCT_CATEGORY, T.StringType(), True),
        T.StructField(QUANTITY, T.IntegerType(), False),
        T.StructField(UNIT_PRICE, T.DoubleType(), False),
        T.StructField(LINE_ID, T.StringType(), True),
    ]),
    required=(CUSTOMER_ID, ORDER_ID, TS, QUANTITY, UNIT_PRICE),
    time_column=TS,
)

CLICKSTREAM = TableSchema(
    name="clickstream",
    struct=T.StructType([
        T.StructField(CUSTOMER_ID, T.StringType(), False),
        T.StructField(SESSION_ID, T.StringType(), False),
        T.StructField(TS, T.TimestampType(), False),
        T.StructField(PAGE_TYPE, T.StringType(), False),
        T.StructField(PRODUCT_CATEGORY, T.StringType(), True),
        T.StructField(DURATION_S, T.DoubleType(), False),
    ]),
    required=(CUSTOMER_ID, SESSION_ID, TS, PAGE_TYPE, DURATION_S),
    time_column=TS,
)

CUSTOMERS = TableSchema(
    name="customers",
    struct=T.StructType([
        T.StructField(CUSTOMER_ID, T.StringType(), False),
        T.StructField(AGE, T.IntegerType(), True),
        T.StructField(GENDER, T.StringType(), True),
        T.StructField(LOCATION, T.StringType(), True),
        T.StructField(SIGNUP_DATE, T.DateType(), True),
    ]),
    required=(CUSTOMER_ID,),
    time_column=SIGNUP_DATE,
)

RAW_TABLES = {t.name: t for t in (TRANSACTIONS, CLICKSTREAM, CUSTOMERS)}


@dataclass(frozen=True)
class ValidationLimits:
    """Bounds beyond which a raw value is implausible and its row is quarantined."""

    max_line_amount: float = 1_000_000.0
    max_quantity: int = 10_000
    max_duration_s: float = 86_400.0
    max_age: int = 120


def check_columns(df: DataFrame, schema: TableSchema) -> None:
    """Raise ``InputError`` naming every required column the input lacks."""
    missing = [c for c in schema.required if c not in df.columns]
    if missing:
        raise InputError(
            f"{schema.name}: missing required column(s) {', '.join(missing)}; found {_shown(df.columns)}"
        )


def _shown(names: list[str], most: int = 20, width: int = 40) -> str:
    """Column names for a message: non-printable characters escaped, long names and lists cut."""
    if not names:
        return "no columns"
    shown = []
    for name in names[:most]:
        text = name.encode("unicode_escape").decode("ascii")
        shown.append(text if len(text) <= width else text[:width] + "...")
    extra = f" and {len(names) - most} more" if len(names) > most else ""
    hint = " (is --format right?)" if any(not n.isprintable() for n in names) else ""
    return ", ".join(shown) + extra + hint


def _raw(name: str) -> str:
    return f"_raw_{name}"


def conform(df: DataFrame, schema: TableSchema) -> tuple[DataFrame, set[str]]:
    """Select the schema's columns in order, text trimmed, cast with ``_cast`` (unparseable values
    become null).

    Returns the frame and the names of the columns whose input type differed from the schema's:
    for those the raw text is kept as ``_raw_<col>`` so validation can tell a missing value from an
    unparseable one. A column that already has the schema's type (typed Parquet) cannot be
    unparseable and keeps no raw text: stringifying every timestamp of a large log is costly.
    Optional columns absent from the input become nulls; extra columns are dropped, except the
    reader's ``_corrupt_record`` (the text of a malformed JSON/CSV line), kept for validation.
    """
    check_columns(df, schema)
    cols, with_raw = [], set()
    for field in schema.struct.fields:
        if field.name not in df.columns:
            cols.append(F.lit(None).cast(field.dataType).alias(field.name))
        elif df.schema[field.name].dataType == field.dataType:
            value = F.trim(F.col(field.name)) if isinstance(field.dataType, T.StringType) else F.col(field.name)
            cols.append((fold_category(value) if field.name == PRODUCT_CATEGORY else value).alias(field.name))
        else:
            value = _cast(F.col(field.name), df.schema[field.name].dataType, field.dataType)
            cols.append((fold_category(value) if field.name == PRODUCT_CATEGORY else value).alias(field.name))
            cols.append(F.col(field.name).cast(T.StringType()).alias(_raw(field.name)))
            with_raw.add(field.name)
    if CORRUPT_RECORD in df.columns:
        cols.append(F.col(CORRUPT_RECORD))
    return df.select(*cols), with_raw


def fold_category(c: Column) -> Column:
    """A product category in lower case, runs of white space one space (``categories.fold_category``
    is the same rule in Python): ``Books`` and ``books`` are one category. The regular expression
    runs only on a value it would change (two spaces in a row, or other white space): run on every
    row it cost more than the rest of the fold (bench/RESULTS.md, session 12)."""
    changed = F.lit(False)
    for run in _WHITE_SPACE_RUNS:
        changed = changed | c.contains(run)
    return F.lower(F.trim(F.when(changed, F.regexp_replace(c, r"\s+", " ")).otherwise(c)))


_WHITE_SPACE_RUNS = ("  ", "\t", "\n", "\x0b", "\f", "\r")   # what Java's \s matches, but a single space


_ISO_DATE_START = r"^\s*[+-]?\d{4,}-\d{1,2}-\d{1,2}"


def _cast(source: Column, given: T.DataType, wanted: T.DataType) -> Column:
    """``source`` (of type ``given``) as ``wanted``, null where it does not parse:
    - text is trimmed (``' C00000002 '`` is customer ``C00000002``);
    - an integer from text goes through a double, so a float export's ``1.0`` is 1 (a fractional
      ``1.5`` truncates here and is rejected as non-integral by its rule);
    - a date or timestamp from text needs year, month and day (Spark reads ``2024`` as 2024-01-01);
      from a number its text is parsed (Spark cannot cast a number to a date), so it is rejected."""
    if isinstance(wanted, (T.DateType, T.TimestampType)):
        if isinstance(given, (T.DateType, T.TimestampType, T.TimestampNTZType)):
            return source.try_cast(wanted)
        text = source.cast(T.StringType())
        return F.when(text.rlike(_ISO_DATE_START), F.trim(text).try_cast(wanted))
    if isinstance(given, T.StringType):
        source = F.trim(source)
        if isinstance(wanted, (T.IntegerType, T.LongType)):
            return source.try_cast(T.DoubleType()).try_cast(wanted)
    return source.try_cast(wanted)


def _not_finite(c: Column) -> Column:
    return F.isnan(c) | (F.abs(c) == float("inf"))


def _finite(c: Column) -> Column:
    """True for a real number; range rules use it so NaN/inf get only their own reason."""
    return c.isNotNull() & ~_not_finite(c)


def is_blank(c: Column, text: bool = True) -> Column:
    """Null, or (for text) empty after trimming."""
    return (c.isNull() | (F.trim(c) == "")) if text else c.isNull()


def _reasons(schema: TableSchema, limits: ValidationLimits, with_raw: set[str]) -> list[Column]:
    """Reject rules, each a column that is a reason string when the rule fires and null otherwise."""
    rules: list[tuple[Column, str]] = []
    for field in schema.struct.fields:
        value = F.col(field.name)
        if field.name in with_raw:
            blank = is_blank(F.col(_raw(field.name)), text=True)
        else:
            blank = is_blank(value, text=isinstance(field.dataType, T.StringType))
        if field.name in schema.required:
            rules.append((blank, f"missing {field.name}"))
        if field.name in with_raw:
            rules.append((~blank & value.isNull(), f"unparseable {field.name}"))
            if isinstance(field.dataType, (T.IntegerType, T.LongType)):   # 1.7 casts to 1: say so instead
                raw_number = F.col(_raw(field.name)).try_cast(T.DoubleType())
                rules.append((value.isNotNull() & (raw_number != value.cast(T.DoubleType())),
                              f"non-integral {field.name}"))
        if isinstance(field.dataType, T.DoubleType):
            rules.append((value.isNotNull() & _not_finite(value), f"non-finite {field.name}"))
    if schema is TRANSACTIONS:
        qty, price = F.col(QUANTITY), F.col(UNIT_PRICE)
        rules += [
            (qty == 0, "zero quantity"),
            (F.abs(qty) > limits.max_quantity, f"quantity beyond {limits.max_quantity}"),
            (_finite(price) & (price < 0), "negative unit_price"),
            (_finite(price) & (F.abs(qty * price) > limits.max_line_amount),
             f"line amount beyond {limits.max_line_amount:g}"),
        ]
    elif schema is CLICKSTREAM:
        duration = F.col(DURATION_S)
        rules += [
            (~F.col(PAGE_TYPE).isin(*PAGE_TYPES), "unknown page_type"),
            (_finite(duration) & (duration < 0), "negative duration_s"),
            (_finite(duration) & (duration > limits.max_duration_s), f"duration_s beyond {limits.max_duration_s:g}"),
        ]
    elif schema is CUSTOMERS:
        rules.append(((F.col(AGE) < 0) | (F.col(AGE) > limits.max_age), f"age outside 0..{limits.max_age}"))
    return [F.when(cond, F.lit(reason)) for cond, reason in rules]


def with_reject_reason(df: DataFrame, rules: list[Column]) -> DataFrame:
    """``df`` with ``reject_reason``: the ``rules`` that fire (each a reason string or null), joined
    by "; ", and "" for a good row. A malformed line (the reader's ``_corrupt_record`` is set) gets
    ``MALFORMED_RECORD`` alone: its fields are null or misaligned, so the other rules say nothing."""
    reason = F.concat_ws("; ", *rules)
    if CORRUPT_RECORD in df.columns:
        reason = F.when(F.col(CORRUPT_RECORD).isNotNull(), F.lit(MALFORMED_RECORD)).otherwise(reason)
    return df.withColumn(REJECT_REASON, reason)


@dataclass(frozen=True)
class Tagged:
    """A raw table's rows, conformed, each with its ``reject_reason`` ("" for a good row), and the
    two views of them: the valid rows cast to the schema, the rejected ones in their raw text."""

    rows: DataFrame
    valid: DataFrame
    rejected: DataFrame


def tag_rows(df: DataFrame, schema: TableSchema, limits: ValidationLimits = ValidationLimits()) -> Tagged:
    """``df`` conformed to ``schema`` and tagged by the validation rules. Rejected rows keep the raw
    text of every schema column so they can be inspected and replayed."""
    conformed, with_raw = conform(df, schema)
    raw_cols = [F.col(_raw(c) if c in with_raw else c).cast(T.StringType()).alias(c) for c in schema.columns]
    if CORRUPT_RECORD in conformed.columns:
        raw_cols.append(F.col(CORRUPT_RECORD))
    tagged = with_reject_reason(conformed, _reasons(schema, limits, with_raw))
    return Tagged(tagged, tagged.where(F.col(REJECT_REASON) == "").select(*schema.columns),
                  tagged.where(F.col(REJECT_REASON) != "").select(*raw_cols, REJECT_REASON))


def split_valid(
    df: DataFrame, schema: TableSchema, limits: ValidationLimits = ValidationLimits()
) -> tuple[DataFrame, DataFrame]:
    """Split a raw table into (valid rows cast to ``schema``, rejected rows with ``reject_reason``)."""
    tagged = tag_rows(df, schema, limits)
    return tagged.valid, tagged.rejected
