"""Feature transforms on tiny hand-built tables with hand-computed expectations."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from retail_ann import categories
from retail_ann import features as fx
from retail_ann.schemas import (
    AS_OF_DATE, CLICKSTREAM, CUSTOMER_ID, CUSTOMERS, FUTURE_SPEND, TRANSACTIONS, TS, WILL_PURCHASE,
)

AS_OF = dt.date(2024, 3, 1)
WINDOW = fx.FeatureWindow(as_of=AS_OF, lookback_days=30, horizon_days=10, recent_days=7)
CATEGORIES = ["electronics", "books"]


def ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


TX_ROWS = [
    # customer, order, ts, category, qty, price
    ("c1", "o0", ts("2024-01-15 09:00:00"), "electronics", 1, 100.0),  # before the window
    ("c1", "o1", ts("2024-02-10 10:00:00"), "electronics", 2, 10.0),
    ("c1", "o1", ts("2024-02-10 10:00:00"), "books", 1, 5.0),
    ("c1", "o2", ts("2024-02-25 12:00:00"), "fashion", 1, 30.0),
    ("c1", "o1", ts("2024-02-27 08:00:00"), "electronics", -1, 10.0),  # a return
    ("c1", "o3", ts("2024-03-05 10:00:00"), "books", 2, 7.0),          # horizon
    ("c1", "o4", ts("2024-03-20 10:00:00"), "books", 1, 50.0),         # after the horizon
    ("c2", "o5", ts("2024-03-02 10:00:00"), "books", 1, 10.0),         # horizon only
    ("c3", "o6", ts("2024-02-28 23:59:59"), "electronics", 1, 20.0),
    ("c3", "o6", ts("2024-03-03 10:00:00"), "electronics", -1, 20.0),  # return in the horizon
]
CLICK_ROWS = [
    # customer, session, ts, page type, category, duration
    ("c1", "s0", ts("2024-01-01 10:00:00"), "home", None, 99.0),        # before the window
    ("c1", "s1", ts("2024-02-10 10:00:00"), "home", None, 10.0),
    ("c1", "s1", ts("2024-02-10 10:00:10"), "product", "electronics", 30.0),
    ("c1", "s1", ts("2024-02-10 10:00:40"), "cart", "electronics", 20.0),
    ("c1", "s2", ts("2024-02-26 18:00:00"), "product", "fashion", 40.0),
    ("c1", "s2", ts("2024-02-26 18:00:40"), "product", "books", 20.0),
    ("c1", "s3", ts("2024-03-02 18:00:00"), "product", "books", 100.0),  # after the cutoff
    ("c4", "s4", ts("2024-02-20 11:00:00"), "search", None, 15.0),
]
CUSTOMER_ROWS = [
    ("c1", 30, "F", "north", dt.date(2023, 6, 1)),
    ("c2", 41, "M", "south", dt.date(2024, 2, 1)),
    ("c5", 25, "F", "east", dt.date(2024, 3, 5)),   # signs up after the cutoff
    ("c6", 60, "M", "west", dt.date(2023, 1, 1)),   # known, never active
]


@pytest.fixture(scope="module")
def tables(spark):
    return (
        spark.createDataFrame([r + (None,) for r in TX_ROWS], TRANSACTIONS.struct),   # no line_id
        spark.createDataFrame(CLICK_ROWS, CLICKSTREAM.struct),
        spark.createDataFrame(CUSTOMER_ROWS, CUSTOMERS.struct),
    )


def by_customer(df):
    return {r[CUSTOMER_ID]: r.asDict() for r in df.collect()}


def test_transaction_aggregates_hand_computed(tables):
    tx, _, _ = tables
    rows = by_customer(fx.transaction_aggregates(tx, WINDOW, CATEGORIES))
    assert set(rows) == {"c1", "c2", "c3"}
    assert rows["c2"][fx.N_ORDERS] == 0 and rows["c2"][WILL_PURCHASE] == 1
    c1 = rows["c1"]
    assert c1[fx.N_ORDERS] == 2
    assert c1[fx.N_ORDERS_RECENT] == 1
    assert c1[fx.GROSS_SPEND] == pytest.approx(55.0)
    assert c1[fx.NET_SPEND] == pytest.approx(45.0)
    assert c1[fx.ITEMS_PURCHASED] == 4
    assert c1[fx.N_RETURNS] == 1
    assert c1[fx.RETURN_VALUE] == pytest.approx(10.0)
    assert c1[fx.AVG_ORDER_VALUE] == pytest.approx(27.5)
    assert c1[fx.DAYS_SINCE_LAST_ORDER] == 5  # 2024-02-25 -> 2024-03-01 (leap year)
    assert c1["spend_cat_electronics"] == pytest.approx(20.0)
    assert c1["spend_cat_books"] == pytest.approx(5.0)
    assert c1["spend_cat_other_categories"] == pytest.approx(30.0)
    assert c1[WILL_PURCHASE] == 1
    assert c1[FUTURE_SPEND] == pytest.approx(14.0)
    c3 = rows["c3"]
    assert c3[WILL_PURCHASE] == 0
    assert c3[FUTURE_SPEND] == 0.0  # a net return in the horizon is not negative spend


def test_clickstream_aggregates_hand_computed(tables):
    _, clicks, _ = tables
    c1 = by_customer(fx.clickstream_aggregates(clicks, WINDOW, CATEGORIES))["c1"]
    assert c1[fx.TOTAL_VISITS] == 2
    assert c1[fx.VISITS_RECENT] == 1
    assert c1[fx.PAGE_VIEWS] == 5
    assert c1[fx.TOTAL_TIME_S] == pytest.approx(120.0)
    assert c1[fx.AVG_SESSION_DURATION_S] == pytest.approx(60.0)
    assert c1[fx.AVG_TIME_PER_PAGE_S] == pytest.approx(24.0)
    assert c1[fx.PAGES_PER_SESSION] == pytest.approx(2.5)
    assert c1[fx.PRODUCT_VIEWS] == 3
    assert c1[fx.CART_ADDS] == 1
    assert c1[fx.SEARCHES] == 0
    assert c1["views_cat_electronics"] == 1
    assert c1["views_cat_books"] == 1
    assert c1["views_cat_other_categories"] == 1
    assert c1[fx.DAYS_SINCE_LAST_VISIT] == 4


def test_universe_and_fills(tables):
    tx, clicks, customers = tables
    table = fx.build_features(tx, WINDOW, CATEGORIES, clicks, customers)
    rows = by_customer(table)
    assert set(rows) == {"c1", "c2", "c3", "c4", "c6"}  # c5 signs up after the cutoff
    assert table.select(CUSTOMER_ID).distinct().count() == table.count()
    quiet = rows["c6"]
    assert quiet[fx.N_ORDERS] == 0 and quiet[fx.TOTAL_VISITS] == 0
    assert quiet[fx.DAYS_SINCE_LAST_ORDER] == 30 and quiet[fx.DAYS_SINCE_LAST_VISIT] == 30
    assert quiet[fx.AVG_ORDER_VALUE] is None
    assert quiet[fx.TENURE_DAYS] == 425
    assert quiet[WILL_PURCHASE] == 0 and quiet[FUTURE_SPEND] == 0.0
    assert rows["c2"][WILL_PURCHASE] == 1 and rows["c2"][FUTURE_SPEND] == pytest.approx(10.0)
    assert rows["c1"]["age"] == 30 and rows["c1"]["gender"] == "F"
    assert rows["c1"][fx.TENURE_DAYS] == (AS_OF - dt.date(2023, 6, 1)).days
    assert rows["c4"][fx.SEARCHES] == 1 and rows["c4"][fx.N_ORDERS] == 0
    assert all(r[AS_OF_DATE] == AS_OF for r in rows.values())


def test_customers_without_a_signup_date_enter_the_universe_by_an_event_before_the_cutoff(spark, tables):
    """As an importer without signup dates writes them: a customer known only from events after the
    cutoff (and, with a buy in the horizon, labelled a buyer) is no row of the table."""
    tx, clicks, _ = tables
    customers = spark.createDataFrame([
        ("c1", 30, "F", "north", None),      # transactions before the cutoff
        ("c2", 41, "M", "south", None),      # a transaction in the horizon only: not known at the cutoff
        ("c4", 50, "F", "east", None),       # a visit before the cutoff
        ("c7", 22, "M", "west", None),       # nothing at all
        ("c3", 35, "M", "north", dt.date(2024, 3, 2)),   # active before, but signs up after the cutoff
    ], CUSTOMERS.struct)
    rows = by_customer(fx.build_features(tx, WINDOW, CATEGORIES, clicks, customers))
    assert set(rows) == {"c1", "c4"}
    assert rows["c4"]["age"] == 50 and rows["c1"][fx.TENURE_DAYS] == 60   # from the first event (a visit)


def test_the_feature_table_reads_each_input_once(spark, tables, tmp_path):
    """The universe comes from the aggregates themselves (full joins), not from a union of id
    branches, each of which would scan its input again (a second pass over the clickstream)."""
    paths = {}
    for name, df in zip(("transactions", "clickstream", "customers"), tables):
        paths[name] = str(tmp_path / name)
        df.write.parquet(paths[name])
    tx, clicks, customers = (spark.read.parquet(paths[n]) for n in paths)
    table = fx.build_features(tx, WINDOW, CATEGORIES, clicks, customers)
    assert set(by_customer(table)) == {"c1", "c2", "c3", "c4", "c6"}
    plan = table._jdf.queryExecution().executedPlan().toString().split("== Initial Plan ==")[0]   # AQE's final plan
    marker = {"transactions": "order_id", "clickstream": "session_id", "customers": "signup_date"}  # in ReadSchema
    scans = {n: sum(m in line for line in plan.splitlines() if "FileScan parquet" in line) for n, m in marker.items()}
    assert scans == {"transactions": 1, "clickstream": 1, "customers": 1}, plan


def test_transactions_only_table(tables):
    tx, _, _ = tables
    rows = by_customer(fx.build_features(tx, WINDOW, CATEGORIES))
    assert set(rows) == {"c1", "c3"}
    assert fx.TOTAL_VISITS not in rows["c1"]
    assert rows["c1"][fx.TENURE_DAYS] == 46  # first event 2024-01-15


def test_no_event_at_or_after_cutoff_changes_a_feature(tables):
    tx, clicks, customers = tables
    before = F.col(TS) < F.lit(dt.datetime.combine(AS_OF, dt.time()))
    full = fx.build_features(tx, WINDOW, CATEGORIES, clicks, customers)
    cut = fx.build_features(tx.where(before), WINDOW, CATEGORIES, clicks.where(before), customers)
    feature_cols = [c for c in full.columns if c not in (WILL_PURCHASE, FUTURE_SPEND)]
    assert sorted(full.select(feature_cols).collect()) == sorted(cut.select(feature_cols).collect())
    # and the labels really do come from the removed events
    assert full.agg(F.sum(WILL_PURCHASE)).first()[0] > cut.agg(F.sum(WILL_PURCHASE)).first()[0]


def test_category_column_names_are_distinct_short_and_stable():
    assert categories.category_slug("Home & Garden") == "home_garden"
    names = categories.category_columns(fx.SPEND_PREFIX, ["home & garden", "home garden", "books"])
    assert names["books"] == "spend_cat_books" and len(set(names.values())) == 3
    assert all(n.startswith("spend_cat_home_garden_") for c, n in names.items() if c != "books")
    # non-ASCII names that slug alike stay apart; a very long name gets a short column name
    assert len({categories.category_slug("électronique"), categories.category_slug("ëlectronique")}) == 2
    assert categories.category_slug("家居") != categories.category_slug("家电") and categories.category_slug("家居").startswith("c_")
    long = categories.category_slug("x" * 100_000)
    assert len(long) <= categories.MAX_SLUG and long == categories.category_slug("x" * 100_000)
    assert categories.category_columns(fx.SPEND_PREFIX, ["Other Categories"])["Other Categories"] != "spend_cat_other_categories"
    assert categories.fold_category("  Books \t Used ") == "books used"


def test_dedupe_customers_keeps_earliest_signup(spark):
    rows = [("c1", 30, "F", "north", dt.date(2023, 6, 1)), ("c1", 31, "F", "north", dt.date(2022, 1, 1)),
            ("c2", 40, "M", "south", None)]
    unique, dupes = fx.dedupe_customers(spark.createDataFrame(rows, CUSTOMERS.struct))
    assert {r[CUSTOMER_ID]: r["age"] for r in unique.collect()} == {"c1": 31, "c2": 40}
    assert [r["age"] for r in dupes.collect()] == [30]


def test_top_categories_ranks_window_purchases(tables):
    tx, _, _ = tables
    assert fx.top_categories(tx, WINDOW, 2) == ["electronics", "books"]


def test_windows_are_cut_at_midnight_utc_whatever_the_drivers_time_zone(tables, monkeypatch):
    """pyspark reads a naive datetime in the driver process's own time zone: with the driver set to
    New York, window edges built that way would fall at 05:00 UTC and move rows across the cutoff."""
    import time

    from retail_ann.pipeline import data_range

    tx, _, _ = tables
    # a purchase two hours after the cutoff (UTC): a label, never a feature
    tx = tx.unionByName(tx.sparkSession.createDataFrame(
        [("c9", "o9", ts("2024-03-01 02:00:00"), "books", 1, 10.0, None)], TRANSACTIONS.struct))
    in_utc = fx.transaction_aggregates(tx, WINDOW, CATEGORIES)   # its literals are fixed as it is built
    assert by_customer(in_utc)["c9"][WILL_PURCHASE] == 1 and by_customer(in_utc)["c9"][fx.N_ORDERS] == 0
    utc_range = data_range(tx, TRANSACTIONS)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        in_new_york = fx.transaction_aggregates(tx, WINDOW, CATEGORIES)
        assert in_new_york.exceptAll(in_utc).count() == 0 and in_utc.exceptAll(in_new_york).count() == 0
        assert data_range(tx, TRANSACTIONS) == utc_range
        assert utc_range["data_end"] == "2024-03-20T10:00:00"   # the last line, in UTC as the data says
        assert by_customer(in_new_york)["c9"][WILL_PURCHASE] == 1
    finally:
        monkeypatch.undo()
        time.tzset()
