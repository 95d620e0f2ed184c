"""Per-customer features and labels as of a cutoff: pure DataFrame -> DataFrame transforms.

Time windows, for a cutoff ``as_of`` (midnight UTC):

* features come from events in ``[as_of - lookback, as_of)``;
* labels come from events in ``[as_of, as_of + horizon)``;
* the customer universe is who was known at ``as_of``: a customer with a signup date belongs when
  they signed up before ``as_of``; one without (not in the customers table, or a null signup date,
  as importers of logs without one write) when they had an event before ``as_of``. A customer
  quiet in the window still gets a row (counts 0, "days since" capped at the lookback). Nobody
  enters the universe through a later event or a signup at or after the cutoff.

No event at or after ``as_of`` reaches a feature: every feature aggregate is conditional on the
window. ``tenure_days`` is the one feature that looks further back than the lookback (signup date,
else the first event ever seen before the cutoff) — still strictly before the cutoff.

Per-category columns are conditional sums inside the one groupBy per table (no ``pivot``): one
scan and one shuffle per table (see shared/PERF_NOTES.md).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window as SparkWindow
from pyspark.sql import functions as F

from retail_ann.categories import OTHER_CATEGORIES, category_columns
from retail_ann.schemas import (
    AGE, AS_OF_DATE, CUSTOMER_ID, DURATION_S, FUTURE_SPEND, GENDER, LOCATION, ORDER_ID, PAGE_TYPE,
    PRODUCT_CATEGORY, QUANTITY, SESSION_ID, SIGNUP_DATE, TS, UNIT_PRICE, WILL_PURCHASE,
)

# --- feature column names (the feature table's contract beyond ids and labels) -----------------
N_ORDERS = "n_orders"
N_ORDERS_RECENT = "n_orders_recent"
GROSS_SPEND = "gross_spend"
NET_SPEND = "net_spend"
AVG_ORDER_VALUE = "avg_order_value"
ITEMS_PURCHASED = "items_purchased"
N_RETURNS = "n_returns"
RETURN_VALUE = "return_value"
DAYS_SINCE_LAST_ORDER = "days_since_last_order"
TOTAL_VISITS = "total_visits"
VISITS_RECENT = "visits_recent"
PAGE_VIEWS = "page_views"
TOTAL_TIME_S = "total_time_on_site_s"
AVG_SESSION_DURATION_S = "avg_time_on_site_per_session_s"
AVG_TIME_PER_PAGE_S = "avg_time_per_page_s"
PAGES_PER_SESSION = "pages_per_session"
PRODUCT_VIEWS = "product_views"
CART_ADDS = "cart_adds"
CHECKOUT_VIEWS = "checkout_views"
SEARCHES = "searches"
DAYS_SINCE_LAST_VISIT = "days_since_last_visit"
TENURE_DAYS = "tenure_days"
SPEND_PREFIX = "spend_cat_"
VIEWS_PREFIX = "views_cat_"

_FIRST_SEEN = "_first_seen"


@dataclass(frozen=True)
class FeatureWindow:
    """The cutoff and the two windows around it."""

    as_of: dt.date
    lookback_days: int
    horizon_days: int
    recent_days: int = 30

    @property
    def feature_start(self) -> dt.date:
        return self.as_of - dt.timedelta(days=self.lookback_days)

    @property
    def recent_start(self) -> dt.date:
        return self.as_of - dt.timedelta(days=self.recent_days)

    @property
    def label_end(self) -> dt.date:
        return self.as_of + dt.timedelta(days=self.horizon_days)

    def labels_complete(self, last_transaction: dt.datetime) -> bool:
        """Whether the data covers the label window ``[as_of, label_end)``: it ends no later than
        the day after the last transaction's date (a window the data covers to its last day is
        complete). Past that, buyers of the missing days are labelled non-buyers."""
        return self.label_end <= last_transaction.date() + dt.timedelta(days=1)


def _ts_lit(day: dt.date) -> Column:
    """Midnight UTC of ``day`` (an aware datetime: pyspark reads a naive one in the driver's own
    time zone, which would move every window edge on a machine not set to UTC)."""
    return F.lit(dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)).cast("timestamp")


def _between(start: dt.date, end: dt.date) -> Column:
    """``start <= ts < end``."""
    return (F.col(TS) >= _ts_lit(start)) & (F.col(TS) < _ts_lit(end))


def _in_window(w: FeatureWindow) -> Column:
    return _between(w.feature_start, w.as_of)


def _days_since(w: FeatureWindow, c: Column) -> Column:
    return F.datediff(F.lit(w.as_of), F.to_date(c))


def category_feature_names(prefix: str, categories: list[str]) -> list[str]:
    """The per-category columns for ``prefix``: one per listed category, then the remainder."""
    return [*category_columns(prefix, categories).values(), prefix + OTHER_CATEGORIES]


def _per_category(prefix: str, categories: list[str], in_scope: Column, value: Column) -> list[Column]:
    """One conditional sum per category plus the remainder of categories not listed (or null)."""
    cat = F.col(PRODUCT_CATEGORY)
    cols = [
        F.sum(F.when(in_scope & (cat == c), value)).alias(name)
        for c, name in category_columns(prefix, categories).items()
    ]
    listed = cat.isin(*categories) if categories else F.lit(False)
    other = in_scope & (cat.isNull() | ~listed)
    cols.append(F.sum(F.when(other, value)).alias(prefix + OTHER_CATEGORIES))
    return cols


def transaction_aggregates(transactions: DataFrame, w: FeatureWindow, categories: list[str]) -> DataFrame:
    """RFM, returns and per-category spend from the feature window, the labels from the horizon,
    and the first time each customer was seen before the cutoff (for the universe and tenure).

    Returns every customer with a transaction before the end of the horizon; one whose first
    transaction is at or after the cutoff has a null first-seen time and belongs to the universe
    only if the customers table knows them.
    """
    amount = F.col(QUANTITY) * F.col(UNIT_PRICE)
    in_w = _in_window(w)
    bought = in_w & (F.col(QUANTITY) > 0)
    returned = in_w & (F.col(QUANTITY) < 0)
    recent = _between(w.recent_start, w.as_of) & (F.col(QUANTITY) > 0)
    in_horizon = _between(w.as_of, w.label_end)
    aggs = [
        F.min(F.when(F.col(TS) < _ts_lit(w.as_of), F.col(TS))).alias(_FIRST_SEEN),
        F.countDistinct(F.when(bought, F.col(ORDER_ID))).alias(N_ORDERS),
        F.countDistinct(F.when(recent, F.col(ORDER_ID))).alias(N_ORDERS_RECENT),
        F.sum(F.when(bought, amount)).alias(GROSS_SPEND),
        F.sum(F.when(in_w, amount)).alias(NET_SPEND),
        F.sum(F.when(bought, F.col(QUANTITY))).alias(ITEMS_PURCHASED),
        F.count(F.when(returned, 1)).alias(N_RETURNS),
        F.sum(F.when(returned, -amount)).alias(RETURN_VALUE),
        F.max(F.when(bought, F.col(TS))).alias("_last_order"),
        *_per_category(SPEND_PREFIX, categories, bought, amount),
        F.max(F.when(in_horizon & (F.col(QUANTITY) > 0), 1).otherwise(0)).alias(WILL_PURCHASE),
        F.sum(F.when(in_horizon, amount)).alias("_horizon_net"),
    ]
    agg = (
        transactions.where(F.col(TS) < _ts_lit(w.label_end))
        .groupBy(CUSTOMER_ID)
        .agg(*aggs)
    )
    return (
        agg.withColumn(AVG_ORDER_VALUE, F.col(GROSS_SPEND) / F.nullif(F.col(N_ORDERS), F.lit(0)))
        .withColumn(DAYS_SINCE_LAST_ORDER, _days_since(w, F.col("_last_order")))
        .withColumn(FUTURE_SPEND, F.greatest(F.coalesce(F.col("_horizon_net"), F.lit(0.0)), F.lit(0.0)))
        .drop("_last_order", "_horizon_net")
    )


def clickstream_aggregates(clickstream: DataFrame, w: FeatureWindow, categories: list[str]) -> DataFrame:
    """Visits (sessions), time on site, page counts by type and product views per category from the
    feature window. Only customers with a page view before the cutoff are returned.

    Two-level aggregation: pages -> sessions -> customers. The first level collapses a session's
    page views map-side, so counting visits needs no ``countDistinct`` (which would make Spark
    replicate every page row once per distinct expression).
    """
    in_w = _in_window(w)
    page = F.col(PAGE_TYPE)
    counted_pages = {PRODUCT_VIEWS: "product", CART_ADDS: "cart", CHECKOUT_VIEWS: "checkout", SEARCHES: "search"}
    views = _per_category(VIEWS_PREFIX, categories, in_w & (page == "product"), F.lit(1))
    sessions = (
        clickstream.where(F.col(TS) < _ts_lit(w.as_of))
        .groupBy(CUSTOMER_ID, SESSION_ID)
        .agg(
            F.min(F.col(TS)).alias(_FIRST_SEEN),
            F.max(F.when(in_w, F.col(TS))).alias("_last_in_window"),
            F.count(F.when(in_w, 1)).alias(PAGE_VIEWS),
            F.sum(F.when(in_w, F.col(DURATION_S))).alias(TOTAL_TIME_S),
            *[F.count(F.when(in_w & (page == kind), 1)).alias(name) for name, kind in counted_pages.items()],
            *views,
        )
    )
    summed = [PAGE_VIEWS, TOTAL_TIME_S, *counted_pages, *category_feature_names(VIEWS_PREFIX, categories)]
    agg = sessions.groupBy(CUSTOMER_ID).agg(
        F.min(_FIRST_SEEN).alias(_FIRST_SEEN),
        F.count(F.when(F.col(PAGE_VIEWS) > 0, 1)).alias(TOTAL_VISITS),
        F.count(F.when(F.col("_last_in_window") >= _ts_lit(w.recent_start), 1)).alias(VISITS_RECENT),
        F.max("_last_in_window").alias("_last_visit"),
        *[F.sum(c).alias(c) for c in summed],
    )
    visits = F.nullif(F.col(TOTAL_VISITS), F.lit(0))
    return (
        agg.withColumn(AVG_SESSION_DURATION_S, F.col(TOTAL_TIME_S) / visits)
        .withColumn(AVG_TIME_PER_PAGE_S, F.col(TOTAL_TIME_S) / F.nullif(F.col(PAGE_VIEWS), F.lit(0)))
        .withColumn(PAGES_PER_SESSION, F.col(PAGE_VIEWS) / visits)
        .withColumn(DAYS_SINCE_LAST_VISIT, _days_since(w, F.col("_last_visit")))
        .drop("_last_visit")
    )


def dedupe_customers(customers: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Split the customers table into one row per ``customer_id`` (earliest signup wins) and the
    duplicate rows, which the caller quarantines."""
    return _first_and_rest(customers, SparkWindow.partitionBy(CUSTOMER_ID).orderBy(
        F.col(SIGNUP_DATE).asc_nulls_last(), AGE, GENDER, LOCATION))


def split_duplicate_rows(df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Split ``df`` into one copy of each distinct row and the repeats (alike in every column), which
    the caller quarantines: an exported line repeated whole would otherwise count twice."""
    return _first_and_rest(df, SparkWindow.partitionBy(*df.columns).orderBy(*df.columns))


def _first_and_rest(df: DataFrame, window) -> tuple[DataFrame, DataFrame]:
    """(the first row of each ``window`` partition in its order, every other row)."""
    ranked = df.withColumn("_rank", F.row_number().over(window))
    return ranked.where(F.col("_rank") == 1).drop("_rank"), ranked.where(F.col("_rank") > 1).drop("_rank")


def signed_up_before(w: FeatureWindow) -> Column:
    """Customers table rows whose signup puts them in the universe on its own."""
    return F.col(SIGNUP_DATE).isNotNull() & (F.col(SIGNUP_DATE) < F.lit(w.as_of))


def in_universe(w: FeatureWindow) -> Column:
    """After the customers table is joined to the customers with an event before the cutoff: a
    known signup date decides (before the cutoff), else the event does."""
    return F.col(SIGNUP_DATE).isNull() | (F.col(SIGNUP_DATE) < F.lit(w.as_of))


def _count_columns(categories: list[str], has_clickstream: bool) -> list[str]:
    """Features that are counts or sums: 0 for a customer with nothing in the window."""
    cols = [N_ORDERS, N_ORDERS_RECENT, GROSS_SPEND, NET_SPEND, ITEMS_PURCHASED, N_RETURNS, RETURN_VALUE]
    cols += category_feature_names(SPEND_PREFIX, categories)
    if has_clickstream:
        cols += [TOTAL_VISITS, VISITS_RECENT, PAGE_VIEWS, TOTAL_TIME_S, PRODUCT_VIEWS, CART_ADDS,
                 CHECKOUT_VIEWS, SEARCHES]
        cols += category_feature_names(VIEWS_PREFIX, categories)
    return cols


def build_features(
    transactions: DataFrame,
    w: FeatureWindow,
    categories: list[str],
    clickstream: DataFrame | None = None,
    customers: DataFrame | None = None,
) -> DataFrame:
    """The feature table: one row per known customer, features, labels and ``as_of_date``.

    Inputs must already be validated (``schemas.split_valid``) and ``customers`` deduplicated.
    Averages with no events behind them (e.g. average order value with no order) stay null;
    preprocessing imputes them.
    """
    parts = [transaction_aggregates(transactions, w, categories)]
    if clickstream is not None:
        parts.append(clickstream_aggregates(clickstream, w, categories))
    parts = [p.withColumnRenamed(_FIRST_SEEN, f"{_FIRST_SEEN}{i}") for i, p in enumerate(parts)]
    first_event = F.least(*[F.col(f"{_FIRST_SEEN}{i}") for i in range(len(parts))]) if len(parts) > 1 \
        else F.col(f"{_FIRST_SEEN}0")
    seen = first_event.isNotNull()   # an event before the cutoff
    table = parts[0]
    for part in parts[1:]:   # full joins, not a union of id branches: each branch would rescan its input
        table = table.join(part, CUSTOMER_ID, "full")
    if customers is not None:
        cust = customers.select(CUSTOMER_ID, AGE, GENDER, LOCATION, SIGNUP_DATE)   # raw: encoding is training's
        table = table.join(cust, CUSTOMER_ID, "full").where((seen | signed_up_before(w)) & in_universe(w))
        started = F.coalesce(F.col(SIGNUP_DATE), F.to_date(first_event))
    else:
        table = table.where(seen)
        started = F.to_date(first_event)
    table = table.withColumn(TENURE_DAYS, F.datediff(F.lit(w.as_of), started))

    fills = {c: 0 for c in _count_columns(categories, clickstream is not None)}
    fills[DAYS_SINCE_LAST_ORDER] = w.lookback_days
    fills[WILL_PURCHASE] = 0
    fills[FUTURE_SPEND] = 0.0
    if clickstream is not None:
        fills[DAYS_SINCE_LAST_VISIT] = w.lookback_days
    table = table.fillna(fills)
    drop = [c for c in table.columns if c.startswith(_FIRST_SEEN)] + ([SIGNUP_DATE] if customers is not None else [])
    table = table.drop(*drop).withColumn(WILL_PURCHASE, F.col(WILL_PURCHASE).cast("int"))
    feature_cols = sorted(c for c in table.columns if c not in (CUSTOMER_ID, WILL_PURCHASE, FUTURE_SPEND))
    return table.select(CUSTOMER_ID, *feature_cols, WILL_PURCHASE, FUTURE_SPEND).withColumn(
        AS_OF_DATE, F.lit(w.as_of)
    )


def top_categories(transactions: DataFrame, w: FeatureWindow, n: int) -> list[str]:
    """The ``n`` most frequent non-null product categories among the lines (purchases and returns)
    in the feature window, most frequent first (ties by name). Runs a small Spark job."""
    rows = (
        transactions.where(_in_window(w) & F.col(PRODUCT_CATEGORY).isNotNull())
        .groupBy(PRODUCT_CATEGORY).count()
        .orderBy(F.desc("count"), PRODUCT_CATEGORY)
        .limit(n).collect()
    )
    return [r[PRODUCT_CATEGORY] for r in rows]
