"""Row validation: every bad row is quarantined with a reason, never dropped silently."""
from __future__ import annotations

import pytest

from retail_ann.errors import InputError
from retail_ann.schemas import (
    CLICKSTREAM, CUSTOMERS, REJECT_REASON, TRANSACTIONS, ValidationLimits, check_columns, split_valid,
)

TX_COLUMNS = ["customer_id", "order_id", "ts", "product_category", "quantity", "unit_price", "extra"]


def test_exports_are_not_silently_reinterpreted(spark):
    """Padded ids are one customer; a float export's integral quantity is a quantity and a fractional
    one a reject; a year alone is no timestamp (Spark reads ``2024`` as 2024-01-01)."""
    rows = [
        (" c1 ", "o1", "2024-01-02 10:00:00", " books", "1.0", "9.5", "x"),
        ("c1", "o2", " 2024-01-03T10:00:00Z", "books", "2", "9.5", "x"),
        ("c2", "o3", "2024-01-02 10:00:00", "books", "1.5", "9.5", "x"),
        ("c2", "o4", "2024", "books", "1", "9.5", "x"),
        ("c2", "o5", "2024-01", "books", "1", "9.5", "x"),
        ("c2", "o6", "1e0", "books", "1", "9.5", "x"),
    ]
    valid, rejected = split_valid(spark.createDataFrame(rows, TX_COLUMNS), TRANSACTIONS)
    got = {r.order_id: (r.customer_id, r.product_category, r.quantity) for r in valid.collect()}
    assert got == {"o1": ("c1", "books", 1), "o2": ("c1", "books", 2)}
    assert {r.order_id: r[REJECT_REASON] for r in rejected.collect()} == {
        "o3": "non-integral quantity", "o4": "unparseable ts", "o5": "unparseable ts", "o6": "unparseable ts"}


def test_transactions_split_with_reasons(spark):
    rows = [
        ("c1", "o1", "2024-01-02 10:00:00", "books", "2", "9.5", "x"),       # good
        (None, "o2", "2024-01-02 10:00:00", "books", "1", "5", "x"),         # missing id
        ("  ", "o3", "2024-01-02 10:00:00", "books", "1", "5", "x"),         # blank id
        ("c2", "o4", "yesterday", "books", "1", "5", "x"),                   # unparseable ts
        ("c2", "o5", "2024-01-02 10:00:00", "books", "one", "5", "x"),       # unparseable quantity
        ("c2", "o6", "2024-01-02 10:00:00", "books", "1", "-5", "x"),        # negative price
        ("c2", "o7", "2024-01-02 10:00:00", "books", "1", "NaN", "x"),       # NaN price
        ("c2", "o8", "2024-01-02 10:00:00", "books", "3", "9e9", "x"),       # huge amount
        ("c2", "o9", "2024-01-02 10:00:00", "books", "0", "5", "x"),         # zero quantity
        ("c3", "o10", "2024-01-03 10:00:00", None, "-1", "9.5", "x"),        # a return: good
    ]
    df = spark.createDataFrame(rows, TX_COLUMNS)
    valid, rejected = split_valid(df, TRANSACTIONS, ValidationLimits(max_line_amount=1e6))
    assert valid.columns == TRANSACTIONS.columns  # extra column dropped, order fixed
    assert [f.dataType for f in valid.schema] == [f.dataType for f in TRANSACTIONS.struct]
    assert sorted(r.order_id for r in valid.collect()) == ["o1", "o10"]
    reasons = {r.order_id: r[REJECT_REASON] for r in rejected.collect()}
    assert reasons == {
        "o2": "missing customer_id", "o3": "missing customer_id", "o4": "unparseable ts",
        "o5": "unparseable quantity", "o6": "negative unit_price", "o7": "non-finite unit_price",
        "o8": "line amount beyond 1e+06", "o9": "zero quantity",
    }
    assert valid.count() + rejected.count() == df.count()


def test_clickstream_and_customer_rules(spark):
    clicks = spark.createDataFrame([
        ("c1", "s1", "2024-01-02 10:00:00", "product", "books", "12.5"),
        ("c1", "s1", "2024-01-02 10:00:00", "wishlist", None, "3"),
        ("c1", "s1", "2024-01-02 10:00:00", "home", None, "-1"),
        ("c1", "s1", "2024-01-02 10:00:00", "home", None, "inf"),
        ("c1", "s1", "2024-01-02 10:00:00", "home", None, "-inf"),
        ("c1", "s1", "2024-01-02 10:00:00", "home", None, "90000"),
    ], CLICKSTREAM.columns)
    valid, rejected = split_valid(clicks, CLICKSTREAM)
    assert valid.count() == 1
    assert sorted(r[REJECT_REASON] for r in rejected.collect()) == [
        "duration_s beyond 86400", "negative duration_s", "non-finite duration_s", "non-finite duration_s",
        "unknown page_type"]
    customers = spark.createDataFrame([("c1", "34", "F", "north", "2023-01-01"), ("c2", "212", "M", None, "soon")],
                                      CUSTOMERS.columns)
    valid, rejected = split_valid(customers, CUSTOMERS)
    assert [r.customer_id for r in valid.collect()] == ["c1"]
    assert rejected.first()[REJECT_REASON] == "unparseable signup_date; age outside 0..120"


def test_optional_columns_may_be_absent(spark):
    df = spark.createDataFrame([("c1",)], ["customer_id"])
    valid, rejected = split_valid(df, CUSTOMERS)
    assert valid.first().asDict() == {"customer_id": "c1", "age": None, "gender": None, "location": None,
                                      "signup_date": None}
    assert rejected.count() == 0


def test_missing_required_column_is_named(spark):
    df = spark.createDataFrame([("c1", "o1")], ["customer_id", "order_id"])
    with pytest.raises(InputError, match="missing required column\\(s\\) ts, quantity, unit_price"):
        check_columns(df, TRANSACTIONS)


def test_typed_input_is_validated_without_raw_text(spark):
    """Typed (Parquet-like) input: nothing is unparseable, missing and non-finite values still reject."""
    import datetime as dt

    from pyspark.sql import types as T

    from retail_ann.schemas import conform

    nullable = T.StructType([T.StructField(f.name, f.dataType, True) for f in TRANSACTIONS.struct])
    when = dt.datetime(2024, 1, 2, 10)
    df = spark.createDataFrame([
        ("c1", "o1", when, "books", 1, 2.0, None),
        (None, "o2", when, None, 1, 3.0, None),
        ("c2", "o3", None, None, 2, float("nan"), None),
    ], nullable)
    conformed, with_raw = conform(df, TRANSACTIONS)
    assert with_raw == set() and not [c for c in conformed.columns if c.startswith("_raw_")]
    valid, rejected = split_valid(df, TRANSACTIONS)
    assert [r.order_id for r in valid.collect()] == ["o1"]
    reasons = {r.order_id: (r[REJECT_REASON], r.ts) for r in rejected.collect()}
    assert reasons == {"o2": ("missing customer_id", "2024-01-02 10:00:00"),
                       "o3": ("missing ts; non-finite unit_price", None)}


def test_fractional_counts_are_rejected_not_truncated(spark):
    """A double quantity or age would cast to an integer by truncation (1.7 -> 1): it is rejected
    with its own reason, while whole numbers stored as doubles pass."""
    df = spark.createDataFrame([
        ("c1", "o1", "2024-01-02 10:00:00", "books", 2.0, 9.5),
        ("c1", "o2", "2024-01-02 10:00:00", "books", 1.7, 9.5),
        ("c1", "o3", "2024-01-02 10:00:00", "books", -1.0, 9.5),
    ], TRANSACTIONS.columns[:6])
    valid, rejected = split_valid(df, TRANSACTIONS)
    assert sorted((r.order_id, r.quantity) for r in valid.collect()) == [("o1", 2), ("o3", -1)]
    assert [(r.order_id, r.quantity, r[REJECT_REASON]) for r in rejected.collect()] == [
        ("o2", "1.7", "non-integral quantity")]
    customers = spark.createDataFrame([("c1", 34.0, "F", None, None), ("c2", 34.5, "M", None, None)],
                                      "customer_id string, age double, gender string, location string, signup_date string")
    valid, rejected = split_valid(customers, CUSTOMERS)
    assert [(r.customer_id, r.age) for r in valid.collect()] == [("c1", 34)]
    assert rejected.first()[REJECT_REASON] == "non-integral age"


def test_found_columns_are_shown_printable(spark):
    """Reading a binary file as CSV gives a 'header' of raw bytes: the message escapes them and
    asks about the format."""
    df = spark.createDataFrame([("x", 1)], ["PAR1\x15\x04\x15\x80\x01" + "z" * 100, "b"])
    with pytest.raises(InputError) as e:
        check_columns(df, TRANSACTIONS)
    message = str(e.value)
    assert message.isprintable() and "PAR1\\x15" in message and "(is --format right?)" in message
    assert len(message) < 300


def test_malformed_json_line_is_quarantined_with_its_text(spark, tmp_path):
    from retail_ann.inputs import read_table
    from retail_ann.schemas import CORRUPT_RECORD

    broken = '{"customer_id": "c2", "order_id": "o2", "ts": "2024-01-02 10:00:00", "quantity": 1, "unit_'
    path = tmp_path / "tx.json"
    path.write_text("\n".join([
        '{"customer_id": "c1", "order_id": "o1", "ts": "2024-01-02 10:00:00", "quantity": 1, "unit_price": 2.5}',
        broken,
        '{"customer_id": "c3", "order_id": "o3", "ts": "2024-01-02 11:00:00", "quantity": 2, "unit_price": 1.0}',
    ]) + "\n")
    valid, rejected = split_valid(read_table(spark, str(path)), TRANSACTIONS)
    assert sorted(r.order_id for r in valid.collect()) == ["o1", "o3"]
    assert [(r[CORRUPT_RECORD], r[REJECT_REASON]) for r in rejected.collect()] == [(broken, "malformed record")]


def test_csv_lines_with_the_wrong_field_count_are_quarantined_with_their_text(spark, tmp_path):
    """Spark would drop a line's extra fields (or null its missing ones) and go on: such a line's
    fields cannot be trusted to line up with the header, so it is rejected as malformed. The input
    has a column outside the schema, which is what lets Spark prune (and skip the count) unless told not to."""
    from retail_ann.inputs import read_table
    from retail_ann.schemas import CORRUPT_RECORD

    long_line = "c2,o2,2024-01-02 10:00:00,books,1,2.5,x,surplus"
    short_line = "c3,o3,2024-01-02 10:00:00,books,1"
    path = tmp_path / "tx.csv"
    path.write_text("\n".join([
        "customer_id,order_id,ts,product_category,quantity,unit_price,note",
        "c1,o1,2024-01-02 10:00:00,books,1,2.5,x",
        long_line,
        short_line,
        'c4,o4,2024-01-02 10:00:00,"books, used",2,1.0,"a, b"',
    ]) + "\n")
    valid, rejected = split_valid(read_table(spark, str(path)), TRANSACTIONS)
    assert sorted((r.order_id, r.product_category) for r in valid.collect()) == [("o1", "books"), ("o4", "books, used")]
    assert sorted((r[CORRUPT_RECORD], r[REJECT_REASON]) for r in rejected.collect()) == [
        (long_line, "malformed record"), (short_line, "malformed record")]


def test_unreadable_inputs_are_input_errors(spark, tmp_path):
    """An empty directory fails in Spark's schema inference, a CSV or JSON column named like the
    reader's malformed-line column in its schema; each gets a message that says what is wrong."""
    from retail_ann.inputs import read_table

    empty = tmp_path / "empty"
    empty.mkdir()
    for fmt in ("parquet", "csv"):
        with pytest.raises(InputError, match=f"no {fmt} data under"):
            read_table(spark, str(empty), fmt)
    for name, text in (("reserved.csv", "customer_id,_corrupt_record\nc1,x\n"),
                       ("reserved.json", '{"customer_id": "c1", "_corrupt_record": "x"}\n')):
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match="has a column named _corrupt_record"):
            read_table(spark, str(tmp_path / name))


def test_numbers_where_dates_belong_are_rejected_as_rows(spark):
    """Spark cannot cast a number to a date (the job would fail); the number's text is parsed
    instead, so 20230101 is an unparseable signup_date on its row."""
    customers = spark.createDataFrame([("c1", 34, None, None, 20230101)],
                                      "customer_id string, age int, gender string, location string, signup_date int")
    valid, rejected = split_valid(customers, CUSTOMERS)
    assert valid.count() == 0
    assert [(r.signup_date, r[REJECT_REASON]) for r in rejected.collect()] == [("20230101", "unparseable signup_date")]


def test_handled_spark_errors_leave_no_stack_on_stderr(spark, capfd):
    """pyspark logs each analysis error it raises with its stack as JSON; the CLI reports it in one
    line, so outside --log-level DEBUG that log stays quiet."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    from retail_ann.logs import configure_logging

    configure_logging("INFO")
    with pytest.raises(AnalysisException):
        spark.range(1).select(F.col("no_such_column")).collect()
    assert "QueryContextLogger" not in capfd.readouterr().err


def test_categories_are_folded_as_the_python_rule_folds_them(spark):
    """Spark's fold (trim, white-space runs to one space, lower case) and ``categories.fold_category``
    agree, also on the values only the regular expression changes (tabs, line breaks, double spaces)."""
    from pyspark.sql import functions as F

    from retail_ann.categories import fold_category as fold_in_python
    from retail_ann.schemas import fold_category

    values = ["Books", " Home  &  Garden ", "toys\tand\tgames", "a\nb", "a\x0bb", "a\fb", "a\r\nb", "x  \t y",
              "plain words", "UPPER", "", "   "]
    df = spark.createDataFrame([(v,) for v in values], "c string")
    folded = {r.c: r.f for r in df.select("c", fold_category(F.trim("c")).alias("f")).collect()}
    assert folded == {v: fold_in_python(v) for v in values}
