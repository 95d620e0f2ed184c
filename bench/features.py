"""retail-ann's ``features`` job beside a DuckDB query of the same definitions: both results checked
equal, then CPU-seconds and wall of each.

    .venv/bin/python bench/features.py          # 20,000 and 100,000 customers x 365 days, 2 rounds; appends the table
    .venv/bin/python bench/features.py --customers 5000 --days 120 --as-of 2024-04-01 --lookback-days 60 \\
        --horizon-days 30 --rounds 1 --no-append
    .venv/bin/python bench/features.py --tiny   # 500 customers x 60 days, 1 round, nothing appended (CI)

What runs. Each shop is generated once by retail-ann's own generator (``pipeline.run_generate``,
seed 42) under OUT/shops/ and reused. Unless --no-bad-rows, each table's input directory (hard links to
the generated files, OUT/inputs/) also holds ``bench-bad-rows.parquet`` (``bad_rows``): rows each
validation rule rejects, repeated transaction lines (exact, and alike only once trimmed and folded),
repeated customers (the earliest signup wins, one of them only once trimmed), and valid rows on the
window edges, customers known only through an event, a signup at the cutoff, categories that need
folding or a hashed column name. Then, round after round, in turn:

- retail-ann: ``python -m retail_ann.cli features ... --master local[2]``, the job as a user runs it
  (settings from conf/features.yaml, as the CLI reads them);
- DuckDB: this file again (``--duckdb-worker SPEC``), a Python process that reads the same Parquet
  files with DuckDB (--threads), validates them by the rules of ``schemas.split_valid`` (trims,
  category folding, required columns, the limits of conf/features.yaml), drops repeated transaction
  lines (``features.split_duplicate_rows``) and repeated customers (``features.dedupe_customers``),
  chooses the categories as ``features.top_categories``, computes every column of
  ``features.build_features`` in SQL and writes OUT/runs/<shop>/duckdb/as_of_date=D/ as Parquet.

What is compared, after every round: the two tables (the same columns in the same order with the same
Arrow types, the same customers, every value: integers, text and dates exactly, floats within 1e-9
relative or 1e-10 absolute, nulls in the same places), the reject counts (the manifest's
``rejected``), the valid rows and time range of each table (its ``data``) and the category list.
Any difference is printed and the script exits 1: a timing of different work is worthless. The
windows are cut at midnight UTC (DuckDB's TimeZone is UTC), as the README says retail-ann cuts them.

Not reproduced: the rules only text inputs reach (unparseable or non-integral values, malformed
lines). The inputs are typed Parquet, whose columns retail-ann's ``conform`` casts not at all; the
script checks every input file has the schema's types.

How it is measured. Each engine runs as a child of this process, which is made a child subreaper
(Linux ``prctl``): the driver does not wait for the JVM pyspark starts, so the JVM (with any Python
worker it leaves) is reparented here and reaped. CPU-seconds are what the tree's own cgroup was
charged (``proctree``: every process, even those reaped by no one), else user + system time of every
reaped process (``os.wait4``); wall from the start to the last process reaped, peak RSS that of the
largest single process (``ru_maxrss``, not a sum over the tree). Both include start-up: interpreter,
JVM and Spark session for retail-ann; interpreter and DuckDB import for DuckDB. retail-ann also
writes its rejected rows to ``_rejected/``; DuckDB only counts them.

Modules beyond the standard library are imported where they are used: the DuckDB worker is this file
too, and its start-up is part of what is measured.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa

    from retail_ann.config import FeaturesConfig
    from retail_ann.features import FeatureWindow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from proctree import Run, RunFailed, become_subreaper, run_tree  # noqa: E402 (after the path is set)

RESULTS = ROOT / "bench" / "RESULTS.md"
SEED = 42
TABLES = ("transactions", "clickstream", "customers")
BAD_ROWS_FILE = "bench-bad-rows.parquet"
TINY = {"customers": [500], "days": 60, "rounds": 1, "lookback_days": 30, "horizon_days": 14, "as_of_day": 40}
DEFAULTS = {"customers": [20_000, 100_000], "days": 365, "rounds": 2, "lookback_days": 365, "horizon_days": 60}
REL_TOL, ABS_TOL = 1e-9, 1e-10


class BenchError(Exception):
    """A run that failed or results that differ: nothing worth timing."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--customers", type=int, nargs="+", metavar="N",
                   help=f"shop sizes (default {' '.join(map(str, DEFAULTS['customers']))})")
    p.add_argument("--days", type=int, help=f"days of generated history (default {DEFAULTS['days']})")
    p.add_argument("--start", default="2024-01-01", help="first day of the shop (default %(default)s)")
    p.add_argument("--as-of", help="cutoff, YYYY-MM-DD (default: start + days - horizon - 31 days, so the "
                                   "label window ends a month before the data does)")
    p.add_argument("--lookback-days", type=int, help=f"feature window (default {DEFAULTS['lookback_days']})")
    p.add_argument("--horizon-days", type=int, help=f"label window (default {DEFAULTS['horizon_days']})")
    p.add_argument("--rounds", type=int, help=f"interleaved rounds per size (default {DEFAULTS['rounds']})")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads (default %(default)s)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "features"), help="shops, inputs and runs")
    p.add_argument("--tiny", action="store_true",
                   help="500 customers x 60 days, as of day 40, lookback 30, horizon 14, 1 round, nothing "
                        "appended (CI); flags given explicitly still win")
    p.add_argument("--no-append", action="store_true", help="print the table only")
    p.add_argument("--bad-rows", action=argparse.BooleanOptionalAction, default=True,
                   help="add rows that break the rules, duplicates and edge cases to the inputs (default on)")
    p.add_argument("--duckdb-worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    preset = TINY if args.tiny else DEFAULTS
    for key in ("customers", "days", "rounds", "lookback_days", "horizon_days"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.as_of is None:
        offset = TINY["as_of_day"] if args.tiny else args.days - args.horizon_days - 31
        args.as_of = (dt.date.fromisoformat(args.start) + dt.timedelta(days=offset)).isoformat()
    if max(args.customers) <= 0 or args.days <= 0 or args.rounds <= 0 or args.threads <= 0:
        p.error("--customers, --days, --rounds and --threads must be positive")
    return args


# -------------------------------------------------------------------------------------- the shop
def ensure_shop(shop: Path, customers: int, days: int, start: str, logs: Path) -> None:
    """Generate the shop into ``shop`` with retail-ann's generator, unless it is already there."""
    manifest = shop / "_manifest.json"
    wanted = {"customers": customers, "days": days, "start": start, "seed": SEED}
    if manifest.exists() and all((shop / t / "_SUCCESS").exists() for t in TABLES):
        config = json.loads(manifest.read_text())["config"]
        if {k: config[k] for k in wanted} == wanted:
            return
    print(f"generating {customers:,} customers x {days} days into {shop}", flush=True)
    logs.mkdir(parents=True, exist_ok=True)
    code = ("from retail_ann.config import GenerateConfig; from retail_ann.pipeline import run_generate; "
            "from retail_ann.spark import build_session; "
            f"run_generate(build_session('bench-features-generate', master='local[2]'), GenerateConfig(**{wanted!r}), "
            f"{str(shop)!r})")
    run_tree([sys.executable, "-c", code], logs / "generate.log", logs)   # in a child: its JVM is reaped too


def data_files(directory: Path) -> list[Path]:
    """The Parquet data files of a table directory (hidden ``_``/``.`` files are not data)."""
    return sorted(p for p in directory.iterdir() if p.suffix == ".parquet" and not p.name.startswith(("_", ".")))


def check_typed(files: list[Path], table: str) -> None:
    """Every input file has the schema's column types, so ``schemas.conform`` casts nothing (the rules
    only text inputs reach are not reproduced here)."""
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema
    from retail_ann.schemas import RAW_TABLES

    wanted = [(f.name, f.type) for f in to_arrow_schema(RAW_TABLES[table].struct)]
    for f in files:
        found = [(c.name, c.type) for c in pq.read_schema(f)]
        if found != wanted:
            raise BenchError(f"{f}: columns {found}, not the {table} schema's {wanted}")


def prepare_inputs(shop: Path, inputs: Path, window: FeatureWindow, bad: bool) -> dict[str, Path]:
    """The directory each job reads per table: the generated one, or (``bad``) a fresh directory of
    hard links to its files plus ``BAD_ROWS_FILE``."""
    if not bad:
        return {t: shop / t for t in TABLES}
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(inputs, ignore_errors=True)
    rows = bad_rows(window, pq.read_table(shop / "transactions"), pq.read_table(shop / "customers"))
    for table in TABLES:
        target = inputs / table
        target.mkdir(parents=True)
        files = data_files(shop / table)
        for f in files:
            os.link(f, target / f.name)
        schema = pa.schema([f.with_nullable(True) for f in pq.read_schema(files[0]).remove_metadata()])
        pq.write_table(pa.Table.from_pylist(rows[table], schema=schema), target / BAD_ROWS_FILE)
    return {t: inputs / t for t in TABLES}


def bad_rows(w: FeatureWindow, transactions: pa.Table, customers: pa.Table) -> dict[str, list[dict]]:
    """Rows to add to the generated tables, keyed by table: rejects, duplicates and edge cases around
    the window ``w``. ``Z``-ids are customers the shop does not have."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def at(day: dt.date, *hms: int, us: int = 0) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, *hms, microsecond=us, tzinfo=dt.timezone.utc)

    known = customers.filter(pc.less(customers["signup_date"], pa.scalar(w.as_of - dt.timedelta(days=30))))
    known = known.sort_by("customer_id").slice(0, 3).to_pylist()
    ts = transactions["ts"]
    in_window = pc.and_(pc.greater_equal(ts, pa.scalar(at(w.feature_start), ts.type)),
                        pc.less(ts, pa.scalar(at(w.as_of), ts.type)))
    lines = transactions.filter(pc.and_(pc.and_(in_window, pc.greater(transactions["quantity"], 0)),
                                        pc.is_valid(transactions["product_category"])))
    lines = lines.sort_by([("customer_id", "ascending"), ("order_id", "ascending"), ("line_id", "ascending")])
    lines = lines.slice(0, 3).to_pylist()
    if len(known) < 3 or len(lines) < 3:
        raise BenchError("the shop is too small for the bad rows: too few customers or lines before the cutoff")
    a, b, c = (k["customer_id"] for k in known)
    mid = at(w.feature_start + dt.timedelta(days=w.lookback_days // 2), 12)
    day_before = at(w.as_of - dt.timedelta(days=1), 23, 59, 59, us=999_999)

    def tx(cust, order, when, cat="books", qty=1, price=10.0, line="1") -> dict:
        return {"customer_id": cust, "order_id": order, "ts": when, "product_category": cat, "quantity": qty,
                "unit_price": price, "line_id": line}

    def page(cust, session, when, kind="home", cat=None, seconds=5.0) -> dict:
        return {"customer_id": cust, "session_id": session, "ts": when, "page_type": kind, "product_category": cat,
                "duration_s": seconds}

    def cust(cid, signup, age=40, gender="F", location="north") -> dict:
        return {"customer_id": cid, "age": age, "gender": gender, "location": location, "signup_date": signup}

    nan, inf = float("nan"), float("inf")
    padded = {**lines[0], "customer_id": f"  {lines[0]['customer_id']} ", "order_id": f" {lines[0]['order_id']}",
              "product_category": f"  {lines[0]['product_category'].upper()}  "}   # alike once trimmed and folded
    return {
        "transactions": [
            # rejected: one rule each, the last one two rules
            tx(a, "ZO-1", mid, price=-5.0), tx(None, "ZO-2", mid), tx("   ", "ZO-3", mid), tx(a, " ", mid),
            tx(a, "ZO-4", None), tx(a, "ZO-5", mid, qty=None), tx(a, "ZO-6", mid, price=None),
            tx(a, "ZO-7", mid, qty=0), tx(a, "ZO-8", mid, qty=10_001, price=1.0), tx(a, "ZO-9", mid, qty=-10_001),
            tx(a, "ZO-10", mid, qty=500, price=2500.0), tx(a, "ZO-11", mid, price=nan), tx(a, "ZO-12", mid, price=inf),
            tx(a, "ZO-13", mid, qty=0, price=-1.0),
            # repeated lines: exact, and alike once trimmed and folded
            *lines, padded,
            # valid: window edges, folding, a hashed category name, returns, a zero price, same-day orders
            tx("ZB-EVENT-ONLY", "ZO-B0", at(w.feature_start), cat="CAFÉ", price=8.0),
            tx("ZB-EVENT-ONLY", "ZO-B0", at(w.feature_start + dt.timedelta(days=3), 9), cat="café", qty=-1, price=8.0),
            tx("ZB-EVENT-ONLY", "ZO-B1", day_before, cat="Garden \t  Tools", qty=2, price=12.5),
            tx("ZB-EVENT-ONLY", "ZO-B2", at(w.as_of), cat=" garden tools", price=30.0),
            tx(a, "ZO-A1", at(w.label_end)), tx(a, "ZO-A2", at(w.feature_start) - dt.timedelta(microseconds=1)),
            tx(a, "ZO-A3", mid, cat=None, qty=2, price=0.0), tx(a, "ZO-A4", at(w.recent_start), cat=None, price=3.0),
            tx(b, "ZO-B3", at(w.as_of, 0, 0, 1), cat="toys", qty=1, price=7.0),
            tx("ZC-LATE-SIGNUP", "ZO-C1", mid), tx("ZG-AFTER-CUTOFF", "ZO-G1", at(w.as_of + dt.timedelta(days=1))),
            tx("ZH-SAME-DAY", "ZO-H1", at(w.recent_start, 8)), tx("ZH-SAME-DAY", "ZO-H2", at(w.recent_start, 20)),
        ],
        "clickstream": [
            # rejected: one rule each, the last one two rules
            page(a, "ZS-1", mid, "product", "books", 90_000.0), page(a, "ZS-2", mid, seconds=-1.0),
            page(a, "ZS-3", mid, "Product", "books"), page(a, "ZS-4", mid, None), page(a, " ", mid),
            page(a, "ZS-5", mid, seconds=nan), page(a, "ZS-6", mid, seconds=inf), page(None, "ZS-7", mid),
            page(a, "ZS-8", None), page(a, "ZS-9", mid, seconds=None), page(a, "ZS-10", mid, ""),
            # valid: trimmed page type, folded and hashed categories, sessions across the window's edges
            page("ZD-CLICK-ONLY", "ZS-D1", mid, " product ", " GARDEN  tools", 30.0),
            page("ZD-CLICK-ONLY", "ZS-D1", mid + dt.timedelta(minutes=1), "product", "Café", 20.0),
            page("ZD-CLICK-ONLY", "ZS-D1", mid + dt.timedelta(minutes=2), "cart", None, 10.0),
            page("ZD-CLICK-ONLY", "ZS-D2", at(w.as_of)),
            page("ZE-OLD-CLICK", "ZS-E1", at(w.feature_start) - dt.timedelta(seconds=30), "search", None, 12.0),
            page("ZE-OLD-CLICK", "ZS-E1", at(w.feature_start), "product", "books", 8.0),
            page("ZB-EVENT-ONLY", "ZS-B1", at(w.recent_start), "product", None, 0.0),
            page(a, "ZS-A1", mid, "checkout", None, 86_400.0),
        ],
        "customers": [
            # rejected
            cust(None, known[0]["signup_date"]), cust("  ", known[0]["signup_date"]),
            cust("ZBAD-AGE-1", known[0]["signup_date"], age=-1), cust("ZBAD-AGE-2", known[0]["signup_date"], age=121),
            # repeated: a later signup and a missing one lose; an earlier one, padded, wins
            cust(a, known[0]["signup_date"] + dt.timedelta(days=1), age=99),
            cust(f" {b}  ", known[1]["signup_date"] - dt.timedelta(days=1), age=77, gender=" M ", location=" south "),
            cust(c, None, age=55),
            # valid: a signup at the cutoff (out, despite its events), no signup with and without events
            cust("ZC-LATE-SIGNUP", w.as_of), cust("ZD-CLICK-ONLY", None, gender=" F "), cust("ZF-NO-EVENTS", None),
        ],
    }


# ----------------------------------------------------------------------------------------- runs
def features_config(lookback_days: int, horizon_days: int) -> FeaturesConfig:
    """The ``FeaturesConfig`` the CLI builds for these flags (conf/features.yaml, then the flags)."""
    from retail_ann.config import FeaturesConfig, default_config_path, load_config

    return load_config(FeaturesConfig, default_config_path("features"),
                       {"lookback_days": lookback_days, "horizon_days": horizon_days})


def run_retail_ann(inputs: dict[str, Path], out: Path, args: argparse.Namespace, log: Path) -> tuple[Run, dict]:
    """The ``features`` job as a user runs it; (what it cost, its manifest)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "retail_ann.cli", "features", "--transactions", str(inputs["transactions"]),
           "--clickstream", str(inputs["clickstream"]), "--customers", str(inputs["customers"]),
           "--as-of", args.as_of, "--lookback-days", str(args.lookback_days),
           "--horizon-days", str(args.horizon_days), "--out", str(out), "--master", "local[2]",
           "--log-level", "WARNING"]
    run = run_tree(cmd, log, log.parent)
    return run, json.loads((out / f"as_of_date={args.as_of}" / "_manifest.json").read_text())


def duckdb_spec(inputs: dict[str, Path], window: FeatureWindow, cfg: FeaturesConfig, threads: int, out: Path,
                result: Path) -> dict:
    """What the DuckDB worker needs, taken from retail-ann's own definitions: each table's files and
    columns (type, required), the window, the validation limits, the page types, the categories."""
    from retail_ann.categories import fold_category
    from retail_ann.schemas import PAGE_TYPES, RAW_TABLES, ValidationLimits

    tables = {}
    for name in TABLES:
        schema, files = RAW_TABLES[name], data_files(inputs[name])
        check_typed(files, name)
        tables[name] = {"files": [str(f) for f in files], "time_column": schema.time_column,
                        "columns": [[f.name, f.dataType.simpleString(), f.name in schema.required]
                                    for f in schema.struct.fields]}
    limits = ValidationLimits(cfg.max_line_amount, cfg.max_quantity, cfg.max_duration_s)   # as run_features
    return {
        "tables": tables, "threads": threads, "out": str(out), "result": str(result),
        "as_of": window.as_of.isoformat(), "feature_start": window.feature_start.isoformat(),
        "recent_start": window.recent_start.isoformat(), "label_end": window.label_end.isoformat(),
        "lookback_days": window.lookback_days, "recent_days": window.recent_days,
        "limits": asdict(limits), "page_types": list(PAGE_TYPES), "max_categories": cfg.max_categories,
        "categories": list(dict.fromkeys(fold_category(c) for c in cfg.categories)),
    }


def run_duckdb(spec: dict, log: Path) -> tuple[Run, dict]:
    """The DuckDB worker on ``spec``; (what it cost, what it reports)."""
    shutil.rmtree(spec["out"], ignore_errors=True)
    spec_path = log.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec, indent=1))
    run = run_tree([sys.executable, str(Path(__file__).resolve()), "--duckdb-worker", str(spec_path)], log, log.parent)
    return run, json.loads(Path(spec["result"]).read_text())


# ------------------------------------------------------------------------------- the DuckDB side
def duckdb_worker(spec_path: str) -> int:
    """Validate, deduplicate, aggregate and write the feature table with DuckDB (see the docstring)."""
    import duckdb

    spec = json.loads(Path(spec_path).read_text())
    con = duckdb.connect()
    con.execute(f"SET threads = {int(spec['threads'])}")
    con.execute("SET TimeZone = 'UTC'")   # as the Spark session: dates are cut in UTC
    rejected, data = {}, {}
    for name in TABLES:
        rejected[name], data[name] = validate(con, name, spec)
    rejected["transactions_duplicates"] = dedupe(con, "transactions", "")
    rejected["customers_duplicates"] = dedupe(
        con, "customers",
        "QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY signup_date ASC NULLS LAST, "
        "age ASC NULLS FIRST, gender ASC NULLS FIRST, location ASC NULLS FIRST) = 1")
    con.execute("CREATE VIEW clickstream AS SELECT * EXCLUDE (_rejected) FROM clickstream_tagged WHERE NOT _rejected")
    categories = spec["categories"] or top_categories(con, spec)
    con.execute(f"COPY ({feature_query(spec, categories)}) TO {_lit(spec['out'])} "
                "(FORMAT parquet, PARTITION_BY (as_of_date), COMPRESSION snappy)")
    Path(spec["result"]).write_text(json.dumps({"rejected": rejected, "data": data, "categories": categories}))
    return 0


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts(day: str) -> str:
    return f"TIMESTAMP '{day} 00:00:00'"


def _fold(value: str) -> str:
    """``schemas.fold_category``: Java's ``\\s`` runs to one space, trimmed (spaces), lower case."""
    return fr"lower(trim(regexp_replace({value}, '[ \t\n\x0B\f\r]+', ' ', 'g')))"


def _not_finite(c: str) -> str:
    return f"(isnan({c}) OR abs({c}) = 'inf'::DOUBLE)"


def _finite(c: str) -> str:
    return f"({c} IS NOT NULL AND NOT {_not_finite(c)})"


def _rules(name: str, columns: list, limits: dict, page_types: list[str]) -> list[str]:
    """``schemas._reasons`` for typed input: each a condition that rejects the row."""
    rules = []
    for col, kind, required in columns:
        c = _q(col)
        if required:
            rules.append(f"{c} IS NULL OR trim({c}) = ''" if kind == "string" else f"{c} IS NULL")
        if kind == "double":
            rules.append(f"{c} IS NOT NULL AND {_not_finite(c)}")
    if name == "transactions":
        rules += ["quantity = 0", f"abs(quantity) > {int(limits['max_quantity'])}",
                  f"{_finite('unit_price')} AND unit_price < 0",
                  f"{_finite('unit_price')} AND abs(quantity * unit_price) > "
                  f"{float(limits['max_line_amount'])!r}::DOUBLE"]
    elif name == "clickstream":
        rules += [f"page_type NOT IN ({', '.join(map(_lit, page_types))})",
                  f"{_finite('duration_s')} AND duration_s < 0",
                  f"{_finite('duration_s')} AND duration_s > {float(limits['max_duration_s'])!r}::DOUBLE"]
    elif name == "customers":
        rules.append(f"age < 0 OR age > {int(limits['max_age'])}")
    return rules


def _conformed(col: str, kind: str) -> str:
    """``schemas.conform`` for a column that already has its type: text trimmed, categories folded,
    timestamps as UTC wall time."""
    c = _q(col)
    if kind == "string":
        c = _fold(f"trim({c})") if col == "product_category" else f"trim({c})"
    elif kind == "timestamp":
        c = f"CAST({c} AS TIMESTAMP)"
    return f"{c} AS {_q(col)}"


def validate(con: duckdb.DuckDBPyConnection, name: str, spec: dict) -> tuple[int, dict]:
    """Read and tag table ``name`` as ``<name>_tagged``; (rejected rows, ``pipeline.data_range`` of the
    valid ones). A table, read once: as a view, read twice, DuckDB took 17 % more CPU at 100k
    customers (12.3 against 10.5 CPU-s) and the same at 1M (144 against 147), where the table costs
    memory (15.7 GB peak against 2.9)."""
    table = spec["tables"][name]
    files = ", ".join(_lit(f) for f in table["files"])
    rules = " OR ".join(f"coalesce({r}, false)" for r in _rules(name, table["columns"], spec["limits"],
                                                                  spec["page_types"]))
    con.execute(f"CREATE TEMP TABLE {name}_tagged AS SELECT *, {rules} AS _rejected FROM (SELECT "
                f"{', '.join(_conformed(c, kind) for c, kind, _ in table['columns'])} FROM read_parquet([{files}]))")
    tc = _q(table["time_column"])
    n_rejected, rows, start, end = con.execute(
        f"SELECT count(*) FILTER (WHERE _rejected), count(*) FILTER (WHERE NOT _rejected), "
        f"min({tc}) FILTER (WHERE NOT _rejected), max({tc}) FILTER (WHERE NOT _rejected) FROM {name}_tagged").fetchone()
    return n_rejected, {"rows": rows, "data_start": start and start.isoformat(), "data_end": end and end.isoformat()}


def dedupe(con: duckdb.DuckDBPyConnection, name: str, qualify: str) -> int:
    """``<name>`` from the valid rows of ``<name>_tagged``: distinct rows, or (``qualify``) the first
    per key; returns how many valid rows were left out."""
    distinct = "" if qualify else "DISTINCT"
    con.execute(f"CREATE TEMP TABLE {name} AS SELECT {distinct} * EXCLUDE (_rejected) FROM {name}_tagged "
                f"WHERE NOT _rejected {qualify}")
    valid = con.execute(f"SELECT count(*) FROM {name}_tagged WHERE NOT _rejected").fetchone()[0]
    return valid - con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]


def top_categories(con: duckdb.DuckDBPyConnection, spec: dict) -> list[str]:
    """``features.top_categories``: the most frequent categories among the window's lines."""
    return [r[0] for r in con.execute(
        f"SELECT product_category FROM transactions WHERE ts >= {_ts(spec['feature_start'])} "
        f"AND ts < {_ts(spec['as_of'])} AND product_category IS NOT NULL GROUP BY product_category "
        f"ORDER BY count(*) DESC, product_category LIMIT {int(spec['max_categories'])}").fetchall()]


def _per_category(prefix: str, categories: list[str], scope: str, agg: str) -> tuple[list[str], list[str]]:
    """(``agg`` per listed category and for the rest, in ``scope``; their column names, by
    retail-ann's own naming rules: ``retail_ann.categories`` is plain Python, no Spark to import)."""
    from retail_ann.categories import OTHER_CATEGORIES, category_columns

    names = category_columns(prefix, categories)
    listed = f"cat IN ({', '.join(map(_lit, categories))})" if categories else "false"
    cols = [f"{agg} FILTER (WHERE {scope} AND cat = {_lit(c)}) AS {_q(n)}" for c, n in names.items()]
    cols.append(f"{agg} FILTER (WHERE {scope} AND (cat IS NULL OR NOT {listed})) AS {_q(prefix + OTHER_CATEGORIES)}")
    return cols, [*names.values(), prefix + OTHER_CATEGORIES]


def feature_query(spec: dict, categories: list[str]) -> str:
    """``features.build_features`` on the validated ``transactions``, ``clickstream``, ``customers``."""
    fs, rs, asof, le = (_ts(spec[k]) for k in ("feature_start", "recent_start", "as_of", "label_end"))
    as_of_date, lookback = f"DATE '{spec['as_of']}'", int(spec["lookback_days"])
    bought = "in_w AND quantity > 0"
    spend, spend_cols = _per_category("spend_cat_", categories, bought, "sum(amount)")
    views, view_cols = _per_category("views_cat_", categories, "in_w AND page_type = 'product'", "count(*)")
    pages = {"product_views": "product", "cart_adds": "cart", "checkout_views": "checkout", "searches": "search"}
    counts = ["n_orders", "n_orders_recent", "gross_spend", "net_spend", "items_purchased", "n_returns",
              "return_value", *spend_cols, "total_visits", "visits_recent", "page_views",
              "total_time_on_site_s", *pages, *view_cols]
    kept = ["avg_order_value", "avg_time_on_site_per_session_s", "avg_time_per_page_s", "pages_per_session", "age", "gender", "location"]
    final = {c: f"coalesce({_q(c)}, 0)" for c in counts} | {c: _q(c) for c in kept} | {
        "days_since_last_order": f"coalesce(days_since_last_order, {lookback})",
        "days_since_last_visit": f"coalesce(days_since_last_visit, {lookback})",
        "tenure_days": f"datediff('day', coalesce(signup_date, least(t_first_seen, c_first_seen)::DATE), "
                       f"{as_of_date})::INTEGER",
    }
    return f"""
WITH t AS (
  SELECT customer_id, order_id, ts, product_category AS cat, quantity, quantity * unit_price AS amount,
         ts >= {fs} AND ts < {asof} AS in_w, ts >= {rs} AND ts < {asof} AS in_recent,
         ts >= {asof} AND ts < {le} AS in_horizon
  FROM transactions WHERE ts < {le}
), t_agg AS (
  SELECT customer_id,
    min(ts) FILTER (WHERE ts < {asof}) AS t_first_seen,
    count(DISTINCT order_id) FILTER (WHERE {bought}) AS n_orders,
    count(DISTINCT order_id) FILTER (WHERE in_recent AND quantity > 0) AS n_orders_recent,
    sum(amount) FILTER (WHERE {bought}) AS gross_spend,
    sum(amount) FILTER (WHERE in_w) AS net_spend,
    sum(quantity) FILTER (WHERE {bought})::BIGINT AS items_purchased,
    count(*) FILTER (WHERE in_w AND quantity < 0) AS n_returns,
    sum(-amount) FILTER (WHERE in_w AND quantity < 0) AS return_value,
    max(ts) FILTER (WHERE {bought}) AS last_order,
    {', '.join(spend)},
    max(CASE WHEN in_horizon AND quantity > 0 THEN 1 ELSE 0 END) AS will_purchase,
    sum(amount) FILTER (WHERE in_horizon) AS horizon_net
  FROM t GROUP BY customer_id
), t_feat AS (
  SELECT *, gross_spend / NULLIF(n_orders, 0) AS avg_order_value,
    datediff('day', last_order::DATE, {as_of_date})::INTEGER AS days_since_last_order,
    greatest(coalesce(horizon_net, 0::DOUBLE), 0::DOUBLE) AS future_spend
  FROM t_agg
), sessions AS (
  SELECT customer_id, session_id, min(ts) AS first_seen,
    max(ts) FILTER (WHERE in_w) AS last_in_window,
    count(*) FILTER (WHERE in_w) AS page_views,
    sum(duration_s) FILTER (WHERE in_w) AS total_time_on_site_s,
    {', '.join(f"count(*) FILTER (WHERE in_w AND page_type = {_lit(kind)}) AS {name}" for name, kind in pages.items())},
    {', '.join(views)}
  FROM (SELECT *, product_category AS cat, ts >= {fs} AS in_w FROM clickstream WHERE ts < {asof})
  GROUP BY customer_id, session_id
), c_agg AS (
  SELECT customer_id, min(first_seen) AS c_first_seen,
    count(*) FILTER (WHERE page_views > 0) AS total_visits,
    count(*) FILTER (WHERE last_in_window >= {rs}) AS visits_recent,
    max(last_in_window) AS last_visit,
    {', '.join(f"sum({_q(c)})::BIGINT AS {_q(c)}" for c in ["page_views", *pages, *view_cols])},
    sum(total_time_on_site_s) AS total_time_on_site_s
  FROM sessions GROUP BY customer_id
), c_feat AS (
  SELECT *, total_time_on_site_s / NULLIF(total_visits, 0) AS avg_time_on_site_per_session_s,
    total_time_on_site_s / NULLIF(page_views, 0) AS avg_time_per_page_s,
    page_views::DOUBLE / NULLIF(total_visits, 0) AS pages_per_session,
    datediff('day', last_visit::DATE, {as_of_date})::INTEGER AS days_since_last_visit
  FROM c_agg
), ids AS (
  SELECT customer_id FROM t_agg WHERE t_first_seen IS NOT NULL
  UNION SELECT customer_id FROM c_agg WHERE c_first_seen IS NOT NULL
  UNION SELECT customer_id FROM customers WHERE signup_date IS NOT NULL AND signup_date < {as_of_date}
)
SELECT customer_id, {', '.join(f"{final[c]} AS {_q(c)}" for c in sorted(final))},
  coalesce(will_purchase, 0)::INTEGER AS will_purchase, coalesce(future_spend, 0::DOUBLE) AS future_spend,
  {as_of_date} AS as_of_date
FROM ids LEFT JOIN t_feat USING (customer_id) LEFT JOIN c_feat USING (customer_id)
  LEFT JOIN customers USING (customer_id)
WHERE signup_date IS NULL OR signup_date < {as_of_date}
"""


# ------------------------------------------------------------------------------------ the check
def compare(spark_root: Path, duck_root: Path, as_of: str, manifest: dict, duck: dict) -> list[str]:
    """Every difference between the two runs' tables and reports (see the module docstring)."""
    import pyarrow.parquet as pq

    problems = [f"{what}: retail-ann {json.dumps(manifest[key], sort_keys=True)} vs DuckDB "
                f"{json.dumps(duck[key], sort_keys=True)}"
                for key, what in (("rejected", "reject counts"), ("data", "valid rows and time ranges"),
                                  ("categories", "categories")) if manifest[key] != duck[key]]
    part = f"as_of_date={as_of}"
    for root in (spark_root, duck_root):
        found = sorted(p.name for p in root.iterdir() if not p.name.startswith(("_", ".")))
        if found != [part]:
            return [*problems, f"{root}: partitions {found}, not [{part}]"]
    a, b = pq.read_table(spark_root / part), pq.read_table(duck_root / part)
    types_a, types_b = ({f.name: str(f.type) for f in t.schema} for t in (a, b))
    if list(types_a.items()) != list(types_b.items()):
        typed = [f"{n}: {x} vs {types_b[n]}" for n, x in types_a.items() if n in types_b and types_b[n] != x]
        problems.append(f"columns differ: only retail-ann {sorted(types_a.keys() - types_b.keys())}, only DuckDB "
                        f"{sorted(types_b.keys() - types_a.keys())}, same order {a.column_names == b.column_names}, "
                        f"types (retail-ann vs DuckDB) {typed}")
    return problems + compare_rows(a, b)


def compare_rows(a: pa.Table, b: pa.Table) -> list[str]:
    """Differences between two tables keyed by ``customer_id`` (retail-ann's ``a``, DuckDB's ``b``)."""
    import pyarrow.compute as pc

    ids_a, ids_b = set(a["customer_id"].to_pylist()), set(b["customer_id"].to_pylist())
    problems = [f"{name}: {t.num_rows - len(ids)} repeated customer_id"
                for t, ids, name in ((a, ids_a, "retail-ann"), (b, ids_b, "DuckDB")) if len(ids) != t.num_rows]
    if problems:
        return problems
    if ids_a != ids_b:
        problems.append(f"customers differ: {len(ids_a)} vs {len(ids_b)}; only retail-ann "
                        f"{sorted(ids_a - ids_b)[:5]}, only DuckDB {sorted(ids_b - ids_a)[:5]}")
    common = pc.is_in(a["customer_id"], value_set=b["customer_id"])
    a = a.filter(common).sort_by("customer_id")
    b = b.filter(pc.is_in(b["customer_id"], value_set=a["customer_id"])).sort_by("customer_id")
    for name in a.column_names:   # a column of another type (or missing) is told apart in ``compare``
        if name != "customer_id" and name in b.column_names and a[name].type == b[name].type:
            bad = mismatches(a[name], b[name])
            if bad.any():
                rows = bad.nonzero()[0][:5]
                shown = ", ".join(f"{a['customer_id'][i].as_py()}: {a[name][i].as_py()!r} vs {b[name][i].as_py()!r}"
                                  for i in rows)
                problems.append(f"{name}: {int(bad.sum())} of {a.num_rows} rows differ (retail-ann vs DuckDB), {shown}")
    return problems


def mismatches(x: pa.ChunkedArray, y: pa.ChunkedArray) -> np.ndarray:
    """A numpy mask of the rows where columns ``x`` and ``y`` (of one type) differ: a null on one side
    only, floats beyond ``REL_TOL`` relative and ``ABS_TOL`` absolute, any other value not equal."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    null_x, null_y = x.is_null().to_numpy(zero_copy_only=False), y.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(x.type):
        u, v = pc.fill_null(x, 0.0).to_numpy(), pc.fill_null(y, 0.0).to_numpy()
        with np.errstate(invalid="ignore"):
            close = (u == v) | (np.abs(u - v) <= np.maximum(ABS_TOL, REL_TOL * np.maximum(np.abs(u), np.abs(v))))
        equal = close | (np.isnan(u) & np.isnan(v))
    else:
        equal = pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False)
    return (null_x != null_y) | (~null_x & ~null_y & ~equal)


# ----------------------------------------------------------------------------------- the report
def bench_size(args: argparse.Namespace, customers: int, out: Path) -> dict:
    """Generate (or reuse) one shop, then the interleaved rounds, each checked; the medians."""
    from retail_ann import features as fx

    key = f"c{customers}_d{args.days}_{args.start}_seed{SEED}"
    runs_dir = out / "runs" / key
    runs_dir.mkdir(parents=True, exist_ok=True)
    ensure_shop(out / "shops" / key, customers, args.days, args.start, runs_dir)
    cfg = features_config(args.lookback_days, args.horizon_days)
    window = fx.FeatureWindow(dt.date.fromisoformat(args.as_of), cfg.lookback_days, cfg.horizon_days, cfg.recent_days)
    inputs = prepare_inputs(out / "shops" / key, out / "inputs" / key, window, args.bad_rows)
    spec = duckdb_spec(inputs, window, cfg, args.threads, runs_dir / "duckdb", runs_dir / "duckdb-result.json")
    load_before = os.getloadavg()[0]
    timings: dict[str, list[Run]] = {"retail-ann": [], "DuckDB": []}
    for r in range(1, args.rounds + 1):
        spark_run, manifest = run_retail_ann(inputs, runs_dir / "retail_ann", args, runs_dir / f"retail_ann-r{r}.log")
        print_run("retail-ann", customers, r, spark_run,
                  f"  (job stages {sum(manifest['seconds'].values()):.1f} s: {manifest['seconds']})")
        duck_run, duck = run_duckdb(spec, runs_dir / f"duckdb-r{r}.log")
        print_run("DuckDB", customers, r, duck_run)
        problems = compare(runs_dir / "retail_ann", runs_dir / "duckdb", args.as_of, manifest, duck)
        if problems:
            raise BenchError(f"{customers:,} customers, round {r}: the results differ\n  " + "\n  ".join(problems))
        columns = len(data_schema(runs_dir / "retail_ann" / f"as_of_date={args.as_of}"))
        print(f"  round {r}: equal, {manifest['rows']:,} rows x {columns} columns; rejected {manifest['rejected']}",
              flush=True)
        timings["retail-ann"].append(spark_run)
        timings["DuckDB"].append(duck_run)
    return {"customers": customers, "rows": manifest["rows"], "data": manifest["data"], "timings": timings,
            "load": (load_before, os.getloadavg()[0]), "columns": columns}


def data_schema(directory: Path) -> pa.Schema:
    """The Arrow schema of the first data file in ``directory``."""
    import pyarrow.parquet as pq

    return pq.read_schema(data_files(directory)[0])


def print_run(engine: str, customers: int, r: int, run: Run, extra: str = "") -> None:
    print(f"{engine:<10} {customers:>9,} customers  round {r}: wall {run.wall_s:7.2f} s  CPU {run.cpu_s:7.2f} s  "
          f"peak RSS {run.peak_rss_mb:7,.0f} MB (largest of {run.processes} process"
          f"{'es' if run.processes > 1 else ''}){extra}", flush=True)


def report(args: argparse.Namespace, results: list[dict], argv: list[str]) -> str:
    """The heading, the machine and settings, one table row per shop size."""
    import duckdb
    import pyspark

    from retail_ann import __version__

    sources = {r.cpu_source for res in results for runs in res["timings"].values() for r in runs}
    cpu_source = "each tree's own cgroup" if sources == {"cgroup"} else "wait4 of the reaped processes"
    lines = ["| shop (customers x days) | valid rows: transactions / clickstream / customers | feature rows "
             "| retail-ann CPU-s | retail-ann wall s | DuckDB CPU-s | DuckDB wall s | CPU ratio | wall ratio "
             "| peak RSS MB, largest process (retail-ann / DuckDB) | load before → after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for res in results:
        med = {e: {k: statistics.median(getattr(r, k) for r in runs) for k in ("cpu_s", "wall_s", "peak_rss_mb")}
               for e, runs in res["timings"].items()}
        s, d = med["retail-ann"], med["DuckDB"]
        valid = " / ".join(f"{res['data'][t]['rows']:,}" for t in TABLES)
        lines.append(f"| {res['customers']:,} x {args.days} | {valid} | {res['rows']:,} | {s['cpu_s']:.1f} | "
                     f"{s['wall_s']:.1f} | {d['cpu_s']:.2f} | {d['wall_s']:.2f} | {s['cpu_s'] / d['cpu_s']:.3g}x | "
                     f"{s['wall_s'] / d['wall_s']:.3g}x | {s['peak_rss_mb']:,.0f} / {d['peak_rss_mb']:,.0f} | "
                     f"{res['load'][0]:.1f} → {res['load'][1]:.1f} |")
    header = (f"### bench/features.py ({dt.date.today()})\n\n"
              f"`{' '.join(['bench/features.py', *argv])}`: {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, pyspark {pyspark.__version__} (`local[2]`), DuckDB {duckdb.__version__} "
              f"({args.threads} threads), retail-ann {__version__}; as of {args.as_of}, lookback {args.lookback_days} "
              f"days, horizon {args.horizon_days} days; {'with' if args.bad_rows else 'without'} the bad rows. "
              f"Medians of {args.rounds} interleaved round(s), each process tree whole (start-up included; the "
              f"JVM reaped as an orphan; CPU-seconds from {cpu_source}); every round's two tables checked equal ({results[0]['columns']} columns, "
              f"floats to {REL_TOL:g} relative or {ABS_TOL:g} absolute), reject counts too. "
              "Ratios: retail-ann over DuckDB.\n")
    return header + "\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.duckdb_worker:
        return duckdb_worker(args.duckdb_worker)
    try:
        become_subreaper()
        out = Path(args.out).resolve()
        results = [bench_size(args, n, out) for n in args.customers]
    except (BenchError, RunFailed) as e:
        print(f"bench/features.py: error: {e}", file=sys.stderr)
        return 1
    text = report(args, results, argv)
    print("\n" + text)
    if not (args.tiny or args.no_append):
        with RESULTS.open("a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
