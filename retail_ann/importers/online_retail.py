"""UCI "Online Retail" (Chen et al. 2012), the most common public retail log: one CSV line per
invoice line, ``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country``
(its second edition names three of them ``Invoice``, ``Price`` and ``Customer ID``; both read).

- ``customer_id`` ← ``CustomerID``, without the ``.0`` a spreadsheet export appends; a line without
  one (a guest order, about a third of the file) is rejected as missing customer_id.
- ``order_id`` ← ``InvoiceNo``. A cancellation (``C536379``) has a negative quantity: a return.
  Lines that are not goods stay lines: postage (``POST``, ``DOT``) adds to spend, and a discount
  (``D``, a cancellation line) lowers net spend and counts as a return.
- ``ts`` ← ``InvoiceDate``: ``12/1/10 8:26``, ``12/1/2010 8:26`` or ISO; read as UTC.
- ``quantity``, ``unit_price`` ← ``Quantity``, ``UnitPrice``; ``product_category`` stays empty (the
  log has none); ``line_id`` ← ``StockCode``, so two products of one invoice with the same quantity
  and price are two lines, while a line repeated whole is a duplicate (``features`` quarantines it).
- customers: ``location`` ← the ``Country`` of the customer's first invoice line (ties: alphabetical
  first), known from their first event on: a country taken from all their lines (the most frequent,
  say) would let lines after a feature cutoff reach a feature. No ``signup_date``: the log has none,
  so ``features`` counts a customer from their first transaction before the cutoff.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retail_ann import inputs
from retail_ann.importers.dates import iso_timestamp, parse_timestamp
from retail_ann.schemas import (
    CORRUPT_RECORD, CUSTOMER_ID, LINE_ID, LOCATION, ORDER_ID, PRODUCT_CATEGORY, QUANTITY, TS, UNIT_PRICE, TableSchema,
    check_columns, is_blank,
)

COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
RAW = TableSchema(name="online-retail", struct=T.StructType([T.StructField(c, T.StringType()) for c in COLUMNS]),
                  required=("InvoiceNo", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"))
SECOND_EDITION = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
DATE_PATTERNS = ["M/d/yy H:mm", "M/d/yyyy H:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm"]


def read(spark: SparkSession, path: str) -> DataFrame:
    return inputs.read_table(spark, path, "csv")


def to_tables(raw: DataFrame) -> dict[str, DataFrame]:
    """``transactions`` and ``customers`` in canonical column names, as text (validation casts)."""
    raw = raw.withColumnsRenamed({k: v for k, v in SECOND_EDITION.items() if k in raw.columns})
    check_columns(raw, RAW)
    malformed = [CORRUPT_RECORD] if CORRUPT_RECORD in raw.columns else []
    customer = F.regexp_replace(F.trim(F.col("CustomerID")), r"\.0+$", "")
    transactions = raw.select(
        customer.alias(CUSTOMER_ID), F.col("InvoiceNo").alias(ORDER_ID),
        iso_timestamp(F.trim(F.col("InvoiceDate")), DATE_PATTERNS).alias(TS),
        F.lit(None).cast(T.StringType()).alias(PRODUCT_CATEGORY),
        F.col("Quantity").alias(QUANTITY), F.col("UnitPrice").alias(UNIT_PRICE),
        (F.trim(F.col("StockCode")) if "StockCode" in raw.columns else F.lit(None).cast(T.StringType())).alias(LINE_ID),
        *malformed)
    country = F.trim(F.col("Country")) if "Country" in raw.columns else F.lit(None).cast(T.StringType())
    lines = raw.where(F.col(CORRUPT_RECORD).isNull()) if malformed else raw
    dated = (lines.select(customer.alias(CUSTOMER_ID), country.alias(LOCATION),
                          parse_timestamp(F.trim(F.col("InvoiceDate")), DATE_PATTERNS).alias(TS))
             .where(~is_blank(F.col(CUSTOMER_ID)) & F.col(TS).isNotNull()))
    first = Window.partitionBy(CUSTOMER_ID).orderBy(F.col(TS), F.asc_nulls_last(LOCATION))
    customers = (dated.withColumn("_rank", F.row_number().over(first)).where(F.col("_rank") == 1)
                 .select(CUSTOMER_ID, LOCATION))
    return {"transactions": transactions, "customers": customers}
