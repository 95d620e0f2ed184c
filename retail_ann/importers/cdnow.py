"""The CDNOW log (Fader, Hardie & Lee 2005; as shipped in the ``lifetimes`` package): one
whitespace-separated line per purchase, ``customer_id date(YYYYMMDD) number_of_cds dollar_value``,
after one header line. Transactions only: the log has no customer table.

- ``customer_id`` ← ``customer_id`` as written (``00001``: leading zeros kept).
- ``order_id`` ← ``<customer_id>-<date>-<n>``: every line is an order, n-th of that customer's day.
- ``ts`` ← ``date`` (midnight UTC); ``quantity`` ← ``number_of_cds``; ``unit_price`` ←
  ``dollar_value / number_of_cds``; ``product_category`` ← ``cd``.
- A line without exactly four fields is malformed (rejected with its text).
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retail_ann import inputs
from retail_ann.importers.dates import iso_timestamp
from retail_ann.schemas import CORRUPT_RECORD, CUSTOMER_ID, ORDER_ID, PRODUCT_CATEGORY, QUANTITY, TS, UNIT_PRICE

HEADER_FIRST_FIELD = "customer_id"
CATEGORY = "cd"


def read(spark: SparkSession, path: str) -> DataFrame:
    """The log's lines (column ``value``)."""
    return inputs.read_table(spark, path, "text")


def to_tables(raw: DataFrame) -> dict[str, DataFrame]:
    """``transactions`` in canonical column names, as text (validation casts)."""
    line = F.regexp_replace(F.col("value"), r"^\s+|\s+$", "")
    fields = raw.select(line.alias("line"), F.split(line, r"\s+").alias("f"))
    fields = fields.where((F.col("line") != "") & (F.col("f")[0] != HEADER_FIRST_FIELD))
    well_formed = F.size("f") == 4
    customer, date, cds, dollars = (F.when(well_formed, F.col("f")[i]) for i in range(4))
    price = F.try_divide(dollars.try_cast(T.DoubleType()), cds.try_cast(T.DoubleType()))
    nth = F.row_number().over(Window.partitionBy(customer, date).orderBy(cds, dollars))
    return {"transactions": fields.select(
        customer.alias(CUSTOMER_ID),
        F.concat_ws("-", customer, date, nth.cast(T.StringType())).alias(ORDER_ID),
        iso_timestamp(date, ["yyyyMMdd"]).alias(TS),
        F.lit(CATEGORY).alias(PRODUCT_CATEGORY),
        cds.alias(QUANTITY),
        F.coalesce(price.cast(T.StringType()), dollars).alias(UNIT_PRICE),
        F.when(~well_formed, F.col("line")).alias(CORRUPT_RECORD),
    )}
