"""Property: whatever messy rows an export holds, validation never crashes and accounts for every
row it read (accepted + rejected = read), as CSV, JSON lines and Parquet."""
from __future__ import annotations

import csv
import io
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retail_ann.inputs import read_table
from retail_ann.schemas import TRANSACTIONS, split_valid

pytestmark = pytest.mark.slow

COLUMNS = ["customer_id", "order_id", "ts", "product_category", "quantity", "unit_price"]
messy_text = st.one_of(st.none(), st.just(""), st.just("  "), st.text(max_size=12),
                       st.sampled_from([" c1 ", "c2", "C00000002", "日本", "a,b", 'say "hi"', "\t"]))
cells = {
    "customer_id": messy_text,
    "order_id": messy_text,
    "ts": st.one_of(messy_text, st.sampled_from(["2024-01-02 10:00:00", "2024", "2024-13-45", "20240101",
                                                 "2024-01-02T10:00:00Z", "1e9", "9999-12-31 23:59:59"])),
    "product_category": messy_text,
    "quantity": st.one_of(messy_text, st.sampled_from(["1", "1.0", "1.5", "-3", "0", "1e12", "NaN", "99999999999"]),
                          st.integers(-10**6, 10**6).map(str)),
    "unit_price": st.one_of(messy_text, st.sampled_from(["2.5", "-1", "NaN", "inf", "-inf", "1e308", "0"]),
                            st.floats(allow_nan=True, allow_infinity=True).map(repr)),
}
rows = st.lists(st.fixed_dictionaries(cells), min_size=1, max_size=25)


def _write(tmp, fmt: str, data: list[dict]) -> tuple[str, int]:
    """The rows as a file of ``fmt``; returns (path, rows read: a CSV/JSON line is one row)."""
    path = tmp / f"{uuid.uuid4().hex}.{ {'csv': 'csv', 'json': 'jsonl', 'parquet': 'parquet'}[fmt] }"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
        w.writerow(COLUMNS)
        for r in data:   # None as an empty field: CSV has no null
            w.writerow(["" if r[c] is None else r[c].replace("\n", " ").replace("\r", " ") for c in COLUMNS])
        path.write_text(buf.getvalue())
    elif fmt == "json":
        path.write_text("".join(json.dumps(r) + "\n" for r in data) + "{not json\n")
        return str(path), len(data) + 1
    else:
        pq.write_table(pa.table({c: pa.array([r[c] for r in data], pa.string()) for c in COLUMNS}), path)
    return str(path), len(data)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows)
def test_every_row_read_is_accepted_or_rejected_with_a_reason(spark, tmp_path, fmt, data):
    path, read = _write(tmp_path, fmt, data)
    valid, rejected = split_valid(read_table(spark, path), TRANSACTIONS)
    reasons = [r.reject_reason for r in rejected.collect()]
    assert valid.count() + len(reasons) == read
    assert all(reasons)
