"""Inputs as real tools write them: pandas/pyarrow Parquet, CSV exports with their own column order,
directories with stray files. Each case failed (or was misread) before the reader handled it."""
from __future__ import annotations

import datetime as dt
import gzip

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retail_ann.errors import InputError
from retail_ann.inputs import read_table
from retail_ann.schemas import CUSTOMER_ID, ORDER_ID, QUANTITY, TRANSACTIONS, TS, split_valid


def test_pandas_and_pyarrow_parquet_with_nanosecond_timestamps_is_read(spark, tmp_path):
    tx = pd.DataFrame({"customer_id": ["c1", "c2"], "order_id": ["o1", "o2"],
                       "ts": pd.to_datetime(["2024-01-02 10:00:00.123456789", "1969-12-31 23:59:59.999999999"]),
                       "quantity": [1, 2], "unit_price": [2.5, 3.0]})
    tx.to_parquet(tmp_path / "pandas.parquet")                       # pandas' default: TIMESTAMP(NANOS)
    assert pq.read_schema(tmp_path / "pandas.parquet").field("ts").type == pa.timestamp("ns")
    utc = pa.Table.from_pandas(tx.assign(ts=tx["ts"].dt.tz_localize("UTC")), preserve_index=False)
    pq.write_table(utc, tmp_path / "pyarrow.parquet")                 # pyarrow, zone-aware nanoseconds
    for name in ("pandas.parquet", "pyarrow.parquet"):
        valid, rejected = split_valid(read_table(spark, str(tmp_path / name)), TRANSACTIONS)
        assert rejected.count() == 0
        got = sorted((r[CUSTOMER_ID], r[TS]) for r in valid.collect())
        assert got == [("c1", dt.datetime(2024, 1, 2, 10, 0, 0, 123456)),       # floored to the microsecond
                       ("c2", dt.datetime(1969, 12, 31, 23, 59, 59, 999999))]


def test_csv_files_are_mapped_by_their_own_header(spark, tmp_path):
    d = tmp_path / "tx"
    d.mkdir()
    (d / "a.csv").write_text("customer_id,order_id,ts,quantity,unit_price\nc1,o1,2024-01-02 10:00:00,1,2.0\n")
    (d / "b.csv").write_text("order_id,customer_id,unit_price,ts,quantity\no2,c2,3.0,2024-01-03 10:00:00,2\n")
    with gzip.open(d / "c.csv.gz", "wt") as f:
        f.write("quantity,ts,customer_id,order_id,unit_price\n3,2024-01-04 10:00:00,c3,o3,4.0\n")
    valid, rejected = split_valid(read_table(spark, str(d)), TRANSACTIONS)
    assert rejected.count() == 0
    assert sorted((r[CUSTOMER_ID], r[ORDER_ID], r[QUANTITY]) for r in valid.collect()) == [
        ("c1", "o1", 1), ("c2", "o2", 2), ("c3", "o3", 3)]


def test_stray_files_are_left_out_and_two_data_formats_refused(spark, tmp_path, caplog):
    d = tmp_path / "tx"
    spark.createDataFrame([("c1", "o1")], "customer_id string, order_id string").write.parquet(str(d))
    (d / "README.txt").write_text("exported by the shop's ETL\n")
    (d / "notes").write_text("no extension\n")
    df = read_table(spark, str(d))
    assert df.columns == [CUSTOMER_ID, ORDER_ID] and df.count() == 1
    assert any("left out 2 file(s) that are not parquet data: README.txt, notes" in r.message for r in caplog.records)
    (d / "stats.json").write_text('{"rows": 1}\n')
    with pytest.raises(InputError, match="mixes data formats: json: stats.json; parquet: part-"):
        read_table(spark, str(d))
    assert read_table(spark, str(d), "parquet").count() == 1          # --format parquet: the rest is stray
