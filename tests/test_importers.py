"""import: public retail logs (Online Retail, CDNOW) → canonical tables → features."""
from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from retail_ann import features as fx
from retail_ann.cli import main
from retail_ann.config import FeaturesConfig
from retail_ann.errors import InputError
from retail_ann.pipeline import run_features, run_import
from retail_ann.schemas import CORRUPT_RECORD, CUSTOMER_ID, LOCATION, ORDER_ID, QUANTITY, REJECT_REASON, TS, UNIT_PRICE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

ONLINE_RETAIL_LINES = [
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country",
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/10 8:26,2.55,17850,France",
    '536366,22633,"HAND WARMER, UNION JACK",6,12/1/2010 8:28,1.85,17850.0,United Kingdom',
    "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,12/1/10 8:34,1.69,17850,United Kingdom",
    "C536379,D,Discount,-1,12/1/10 9:41,27.5,14527,United Kingdom",
    "536414,22139,,56,12/1/10 11:52,0,,United Kingdom",
    "536415,22140,SOMETHING,1,31/31/10 11:52,2.0,14527,United Kingdom",
    "536416,22141,TOO MANY FIELDS,1,12/2/10 9:00,2.0,14527,United Kingdom,surplus",
]


def _write(path: Path, lines: list[str], newline: str = "\n") -> str:
    path.write_text(newline.join(lines) + newline)
    return str(path)


def _rejected(out: Path, table: str, fmt: str, spark) -> dict[str, int]:
    df = spark.read.parquet(str(out / "_rejected" / table / f"format={fmt}"))
    return {r[REJECT_REASON]: r["count"] for r in df.groupBy(REJECT_REASON).count().collect()}


def test_online_retail_lines_become_transactions_returns_and_customers(spark, tmp_path):
    out = tmp_path / "imported"
    manifest = run_import(spark, "online-retail", _write(tmp_path / "retail.csv", ONLINE_RETAIL_LINES), str(out))
    tx = {r[ORDER_ID]: r for r in spark.read.parquet(str(out / "transactions")).collect()}
    assert sorted(tx) == ["536365", "536366", "536367", "C536379"]
    assert tx["536366"][CUSTOMER_ID] == "17850"                       # "17850.0" from a spreadsheet export
    assert tx["536366"][TS] == dt.datetime(2010, 12, 1, 8, 28)          # four-digit year
    assert tx["536365"][TS] == dt.datetime(2010, 12, 1, 8, 26)
    assert (tx["C536379"][QUANTITY], tx["C536379"][UNIT_PRICE]) == (-1, 27.5)   # a cancellation: a return
    assert _rejected(out, "transactions", "online-retail", spark) == {
        "missing customer_id": 1, "unparseable ts": 1, "malformed record": 1}
    kept = spark.read.parquet(str(out / "_rejected" / "transactions" / "format=online-retail"))
    assert kept.where(F.col(TS) == "31/31/10 11:52").count() == 1       # the text that failed is kept
    assert kept.where(F.col(CORRUPT_RECORD).contains("surplus")).count() == 1
    customers = {r[CUSTOMER_ID]: r[LOCATION] for r in spark.read.parquet(str(out / "customers")).collect()}
    # the country of the first invoice line, not the most frequent one (later lines would leak into features)
    assert customers == {"17850": "France", "14527": "United Kingdom"}
    assert manifest["rows"] == {"transactions": 4, "customers": 2}
    assert manifest["data"]["transactions"] == {"data_start": "2010-12-01T08:26:00", "data_end": "2010-12-01T09:41:00"}
    assert manifest["data"]["customers"] == {"data_start": None, "data_end": None}   # the log has no signup date
    assert manifest["rejected"] == {"transactions": 3, "customers": 0}
    assert json.loads((out / "_manifest.json").read_text())["rows"] == manifest["rows"]


def test_second_edition_column_names_and_iso_dates(spark, tmp_path):
    lines = ["Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country",
             "489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom"]
    out = tmp_path / "imported"
    run_import(spark, "online-retail", _write(tmp_path / "retail2.csv", lines), str(out))
    row = spark.read.parquet(str(out / "transactions")).first()
    assert (row[CUSTOMER_ID], row[ORDER_ID], row[TS], row[QUANTITY]) == ("13085", "489434", dt.datetime(2009, 12, 1, 7, 45), 12)


def test_missing_columns_and_unknown_formats_are_bad_input(spark, tmp_path, capsys):
    path = _write(tmp_path / "retail.csv", ["InvoiceNo,Quantity,InvoiceDate", "1,2,12/1/10 8:26"])
    with pytest.raises(InputError, match="missing required column.*UnitPrice, CustomerID"):
        run_import(spark, "online-retail", path, str(tmp_path / "out"))
    with pytest.raises(InputError, match="unknown import format 'shopify'"):
        run_import(spark, "shopify", path, str(tmp_path / "out"))
    assert main(["import", "online-retail", "--input", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "o"),
                 "--master", "local[1]"]) == 2
    assert "input not found" in capsys.readouterr().err


def test_cdnow_lines_become_one_order_each(spark, tmp_path):
    lines = [" customer_id  date number_of_cds  dollar_value",
             " 00001 19970101  1   11.77",
             " 00002 19970112  1   12.00",
             " 00002 19970112  5   77.00",
             " 00003 19970230  1   9.99",
             " 00004 19970105  2"]
    path = tmp_path / "cdnow.txt.gz"
    path.write_bytes(gzip.compress(("\r\n".join(lines) + "\r\n").encode()))   # as shipped: CRLF, gzip
    out = tmp_path / "imported"
    manifest = run_import(spark, "cdnow", str(path), str(out))
    tx = sorted(spark.read.parquet(str(out / "transactions")).collect(), key=lambda r: (r[ORDER_ID], r[QUANTITY]))
    assert [(r[CUSTOMER_ID], r[QUANTITY], r[UNIT_PRICE]) for r in tx] == [
        ("00001", 1, 11.77), ("00002", 1, 12.0), ("00002", 5, 15.4)]
    assert len({r[ORDER_ID] for r in tx}) == 3                          # two lines on one day: two orders
    assert tx[1][TS] == dt.datetime(1997, 1, 12)
    assert manifest["rows"] == {"transactions": 3}
    assert _rejected(out, "transactions", "cdnow", spark) == {"unparseable ts": 1, "malformed record": 1}
    assert not (out / "customers").exists()


@pytest.mark.skipif(not (SHARED / "online_retail_sample.csv.gz").exists(), reason="../shared/data is not here")
def test_the_online_retail_sample_imports_and_builds_features(spark, tmp_path):
    """The real file's messy edges (guest orders, cancellations, quoted commas) through import and
    features: every line is either imported or rejected with a reason."""
    out = tmp_path / "imported"
    manifest = run_import(spark, "online-retail", str(SHARED / "online_retail_sample.csv.gz"), str(out))
    assert manifest["rows"]["transactions"] + manifest["rejected"]["transactions"] == 28_492
    assert manifest["rejected"]["transactions"] == 10_003                  # the lines with no CustomerID
    features = run_features(spark, FeaturesConfig(lookback_days=7, horizon_days=5, recent_days=3), dt.date(2010, 12, 8),
                            str(out / "transactions"), str(tmp_path / "features"), customers=str(out / "customers"))
    assert features["rejected"]["transactions"] == 0
    assert manifest["data"]["transactions"]["data_start"] == "2010-12-01T08:26:00"
    assert manifest["data"]["transactions"]["data_end"].startswith("2010-12-13")
    assert features["labels_complete"] is True                          # [12-08, 12-13): the data reaches 12-13
    table = spark.read.parquet(str(tmp_path / "features"))
    assert table.count() == features["rows"] > 300
    # no signup dates: a customer is in the universe only with a line before the cutoff (the log starts
    # on 12-01, inside the 7-day lookback), never through a first order in the horizon
    assert table.where((F.col(fx.N_ORDERS) == 0) & (F.col(fx.N_RETURNS) == 0)).count() == 0
    assert table.where(F.col(fx.N_RETURNS) > 0).count() > 10                # cancellations are returns
    assert 0.1 < features["purchase_rate"] < 0.9
