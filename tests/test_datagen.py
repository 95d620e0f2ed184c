"""The synthetic shop: schemas, ids, determinism, validity, calibrated shapes and learnable signal.

Spark runs a small shop: its tables must equal, row for row, the per-chunk Arrow batches the
generator builds (whatever the partitioning) and pass validation. The content tests then read a
larger shop (2000 customers x 240 days) built from those same per-chunk batches without Spark,
which keeps the module fast.
"""
from __future__ import annotations

from functools import reduce

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from retail_ann import datagen
from retail_ann import schemas as S
from retail_ann.config import GenerateConfig
from retail_ann.errors import ConfigError

TABLES = (S.CUSTOMERS, S.TRANSACTIONS, S.CLICKSTREAM)
SMALL = GenerateConfig(customers=500, days=120, start="2024-03-01", seed=11, customers_per_chunk=200)
CFG = GenerateConfig(customers=2000, days=240, start="2024-01-01", seed=7, customers_per_chunk=600)
START = pd.Timestamp(CFG.start)  # timestamps below are naive UTC
DAYS = CFG.days


def _chunks(cfg: GenerateConfig, table: str) -> pa.Table:
    """A table as the generator's per-chunk batches make it, without Spark."""
    plan = datagen.ShopPlan.of(cfg)
    return pa.Table.from_batches([datagen.BUILDERS[table](plan, c) for c in range(plan.n_chunks)])


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(c, "ascending") for c in table.column_names])


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    pdf = table.to_pandas()
    if S.TS in pdf:
        pdf[S.TS] = pdf[S.TS].dt.tz_localize(None)
    return pdf


def _fingerprints(dfs: dict[str, DataFrame]) -> set[tuple]:
    """Order-independent (table, rows, hash sum) of each table, in one Spark job."""
    parts = [
        df.select(F.lit(name).alias("table"), F.hash(*df.columns).cast("long").alias("h"))
        .groupBy("table").agg(F.count("*").alias("rows"), F.sum("h").alias("hash"))
        for name, df in dfs.items()
    ]
    return {tuple(r) for r in reduce(DataFrame.unionByName, parts).collect()}


@pytest.fixture(scope="module")
def spark_shop(spark):
    dfs = {name: df.cache() for name, df in datagen.generate_shop(spark, SMALL).items()}
    yield dfs
    for df in dfs.values():
        df.unpersist()


@pytest.fixture(scope="module")
def shop() -> dict[str, pd.DataFrame]:
    return {t.name: _to_pandas(_chunks(CFG, t.name)) for t in TABLES}


@pytest.fixture(scope="module")
def sessions(shop) -> pd.DataFrame:
    """One row per session, from the clickstream."""
    cs = shop[S.CLICKSTREAM.name]
    cs = cs.assign(
        end=cs[S.TS] + pd.to_timedelta(cs[S.DURATION_S], unit="s"),
        checkout=cs[S.PAGE_TYPE] == "checkout",
        cart=cs[S.PAGE_TYPE] == "cart",
    )
    return cs.groupby(S.SESSION_ID).agg(
        customer=(S.CUSTOMER_ID, "first"),
        customers=(S.CUSTOMER_ID, "nunique"),
        start=(S.TS, "min"),
        end=("end", "max"),
        pages=(S.TS, "size"),
        seconds=(S.DURATION_S, "sum"),
        checkout=("checkout", "any"),
        cart=("cart", "any"),
    )


@pytest.fixture(scope="module")
def orders(shop) -> pd.DataFrame:
    """One row per order (sale lines only), with its value."""
    tx = shop[S.TRANSACTIONS.name]
    sales = tx[tx[S.QUANTITY] > 0]
    sales = sales.assign(value=sales[S.QUANTITY] * sales[S.UNIT_PRICE])
    return sales.groupby(S.ORDER_ID).agg(
        customer=(S.CUSTOMER_ID, "first"),
        customers=(S.CUSTOMER_ID, "nunique"),
        ts=(S.TS, "min"),
        stamps=(S.TS, "nunique"),
        value=("value", "sum"),
    )


# --- Spark -----------------------------------------------------------------------------------

def test_tables_have_exactly_the_declared_schemas(spark_shop):
    assert set(spark_shop) == {t.name for t in TABLES}
    for table in TABLES:
        assert spark_shop[table.name].schema == table.struct


def test_spark_writes_exactly_the_chunks(spark_shop):
    assert spark_shop[S.CLICKSTREAM.name].rdd.getNumPartitions() == 3  # one per chunk
    for table in TABLES:
        got = spark_shop[table.name].toArrow()
        assert got.num_rows > 0
        assert _sorted(got).equals(_sorted(_chunks(SMALL, table.name))), table.name


def test_every_row_passes_validation(spark_shop):
    rejected = [
        S.split_valid(spark_shop[t.name], t)[1].select(F.lit(t.name).alias("table"), S.REJECT_REASON)
        for t in TABLES
    ]
    assert reduce(DataFrame.unionByName, rejected).limit(5).collect() == []


def test_the_number_of_partitions_does_not_change_the_shop(spark, spark_shop):
    one = datagen.generate_shop(spark, GenerateConfig(**{**SMALL.__dict__, "partitions": 1}))
    assert one[S.CLICKSTREAM.name].rdd.getNumPartitions() == 1
    assert _fingerprints(one) == _fingerprints(spark_shop)


# --- content -----------------------------------------------------------------------------------

def test_customer_ids_are_unique_padded_and_complete(shop):
    cu = shop[S.CUSTOMERS.name]
    assert len(cu) == CFG.customers
    assert cu[S.CUSTOMER_ID].is_unique
    assert cu[S.CUSTOMER_ID].str.fullmatch(r"C\d{8}").all()
    assert set(cu[S.CUSTOMER_ID]) == {f"C{i:08d}" for i in range(1, CFG.customers + 1)}


def test_customers_have_plausible_demographics(shop):
    cu = shop[S.CUSTOMERS.name]
    assert cu[S.AGE].dropna().between(16, 90).all()
    assert 0 < cu[S.AGE].isna().mean() < 0.1
    assert set(cu[S.GENDER].dropna()) <= set(datagen.GENDERS)
    assert set(cu[S.LOCATION].dropna()) == set(datagen.REGIONS)
    signup = pd.to_datetime(cu[S.SIGNUP_DATE])
    before = (signup < START).mean()
    assert 0.4 < before < 0.9  # most signed up before the period, the rest during it
    assert signup.max() < (START + pd.Timedelta(days=DAYS))


def test_sessions_and_orders_belong_to_one_known_customer(shop, sessions, orders):
    known = set(shop[S.CUSTOMERS.name][S.CUSTOMER_ID])
    assert (sessions["customers"] == 1).all()
    assert (orders["customers"] == 1).all()
    assert set(sessions["customer"]) <= known
    assert set(shop[S.TRANSACTIONS.name][S.CUSTOMER_ID]) <= known
    assert (orders["stamps"] == 1).all()  # one sale time per order (returns come later)


def test_activity_lies_in_the_period_and_after_signup(shop):
    end = START + pd.Timedelta(days=DAYS)
    signup = shop[S.CUSTOMERS.name].set_index(S.CUSTOMER_ID)[S.SIGNUP_DATE].map(pd.Timestamp)
    for name in (S.TRANSACTIONS.name, S.CLICKSTREAM.name):
        df = shop[name]
        assert df[S.TS].between(START, end, inclusive="left").all()
        day = df[S.TS].dt.normalize()
        assert (day >= df[S.CUSTOMER_ID].map(signup)).all()


def test_each_order_closes_its_session(sessions, orders):
    """An order's ts is the end of its session (same customer and number), which reached checkout."""
    sess = sessions.set_index(sessions.index.str.replace("S", "O", n=1))
    joined = orders.join(sess, how="left", rsuffix="_s")
    assert joined["start"].notna().all()
    assert (joined["customer"] == joined["customer_s"]).all()
    assert joined["checkout"].all() and joined["cart"].all()
    gap = (joined["ts"] - joined["end"]).abs()
    assert (gap <= pd.Timedelta(milliseconds=1)).all()


def test_pages_are_contiguous_and_categorised_by_type(shop):
    cs = shop[S.CLICKSTREAM.name].sort_values([S.SESSION_ID, S.TS])
    assert set(cs[S.PAGE_TYPE]) == set(S.PAGE_TYPES)
    with_category = cs[S.PAGE_TYPE].isin(["product", "category", "cart"])
    assert cs.loc[with_category, S.PRODUCT_CATEGORY].notna().all()
    assert cs.loc[~with_category, S.PRODUCT_CATEGORY].isna().all()
    assert set(cs[S.PRODUCT_CATEGORY].dropna()) == set(CFG.categories)
    # each page starts where the previous one of its session ended
    nxt = cs.groupby(S.SESSION_ID)[S.TS].shift(-1)
    end = cs[S.TS] + pd.to_timedelta(cs[S.DURATION_S], unit="s")
    inner = nxt.notna()
    assert ((nxt[inner] - end[inner]).abs() <= pd.Timedelta(milliseconds=1)).all()


def test_returns_reverse_an_earlier_line_of_the_same_order(shop):
    tx = shop[S.TRANSACTIONS.name]
    sales, rets = tx[tx[S.QUANTITY] > 0], tx[tx[S.QUANTITY] < 0].reset_index(drop=True)
    assert len(rets) > 0
    keys = [S.ORDER_ID, S.CUSTOMER_ID, S.PRODUCT_CATEGORY, S.UNIT_PRICE]
    m = rets.reset_index().merge(sales, on=keys, suffixes=("", "_sale"))
    delay = m[S.TS] - m[f"{S.TS}_sale"]
    in_time = delay.between(pd.Timedelta(days=3), pd.Timedelta(days=30))
    m["ok"] = (-m[S.QUANTITY] <= m[f"{S.QUANTITY}_sale"]) & in_time
    assert m.groupby("index")["ok"].any().reindex(rets.index, fill_value=False).all()


# --- determinism -----------------------------------------------------------------------------

def test_chunks_are_reproducible_without_spark():
    plan = datagen.ShopPlan.of(CFG)
    for build in datagen.BUILDERS.values():
        assert build(plan, 1).equals(build(plan, 1))
        assert not build(plan, 1).equals(build(plan, 2))


def test_a_different_seed_gives_a_different_shop():
    other = GenerateConfig(**{**SMALL.__dict__, "seed": SMALL.seed + 1})
    for table in TABLES:
        assert not _sorted(_chunks(other, table.name)).equals(_sorted(_chunks(SMALL, table.name)))


def test_unknown_categories_and_a_partial_last_chunk():
    cfg = GenerateConfig(customers=130, days=60, seed=3, categories=["alpha", "beta", "gamma"],
                         customers_per_chunk=50)
    plan = datagen.ShopPlan.of(cfg)
    assert plan.n_chunks == 3
    tables = {name: pa.Table.from_batches([build(plan, c) for c in range(plan.n_chunks)]).to_pandas()
              for name, build in datagen.BUILDERS.items()}
    assert tables[S.CUSTOMERS.name][S.CUSTOMER_ID].tolist() == [f"C{i:08d}" for i in range(1, 131)]
    for name in (S.TRANSACTIONS.name, S.CLICKSTREAM.name):
        assert set(tables[name][S.PRODUCT_CATEGORY].dropna()) <= {"alpha", "beta", "gamma"}
        assert len(tables[name]) > 0


def test_a_negative_seed_is_a_config_error():
    with pytest.raises(ConfigError):
        GenerateConfig(seed=-1)


# --- calibration -----------------------------------------------------------------------------

def test_sessions_look_like_a_real_shop(sessions):
    # real shops: median 20 pages (scaled down here), ~681 s on site, heavy tail
    assert 9 <= sessions["pages"].median() <= 16
    assert sessions["pages"].mean() > sessions["pages"].median()
    assert 400 <= sessions["seconds"].median() <= 900
    assert sessions["seconds"].quantile(0.9) > 3 * sessions["seconds"].median()
    weekend = (sessions["start"].dt.dayofweek >= 5).mean()
    assert 0.18 <= weekend <= 0.30
    per_day = sessions["start"].dt.month.value_counts() / pd.Series({2: 29, 5: 31})
    assert per_day[5] > 1.3 * per_day[2]  # the May peak


def test_orders_look_like_a_real_shop(shop, sessions, orders):
    assert 18 <= orders["value"].median() <= 35  # real: median 26, mean 36, log-sd 0.73
    assert orders["value"].mean() > orders["value"].median()
    assert 0.55 <= np.log(orders["value"]).std() <= 1.0
    tx = shop[S.TRANSACTIONS.name]
    assert 0.02 <= (tx[S.QUANTITY] < 0).mean() <= 0.09  # returns ~5% of lines
    assert 0.05 <= len(orders) / len(sessions) <= 0.3  # session conversion
    per_buyer = orders.groupby("customer").size()
    assert per_buyer.median() <= 2 and 0.3 <= (per_buyer == 1).mean() <= 0.7


# --- signal ----------------------------------------------------------------------------------

def test_past_behaviour_predicts_buying_in_the_next_60_days(shop, sessions, orders):
    as_of = pd.Timestamp("2024-07-01")
    since, until = as_of - pd.Timedelta(days=180), as_of + pd.Timedelta(days=60)
    cu = shop[S.CUSTOMERS.name]
    existing = cu.loc[pd.to_datetime(cu[S.SIGNUP_DATE]) < as_of, S.CUSTOMER_ID]
    past_orders = orders[orders["ts"].between(since, as_of, inclusive="left")].groupby("customer")
    past_sessions = sessions[sessions["start"].between(since, as_of, inclusive="left")].groupby("customer")
    features = pd.DataFrame({
        "orders": past_orders.size(),
        "spend": past_orders["value"].sum(),
        "days_since_order": (as_of - past_orders["ts"].max()).dt.days,
        "sessions": past_sessions.size(),
        "pages": past_sessions["pages"].sum(),
        "carts": past_sessions["cart"].sum(),
        "days_since_visit": (as_of - past_sessions["start"].max()).dt.days,
    }).reindex(existing)
    features = features.fillna({"days_since_order": 181, "days_since_visit": 181}).fillna(0)
    buyers = orders.loc[orders["ts"].between(as_of, until, inclusive="left"), "customer"]
    y = features.index.isin(buyers).astype(int)
    assert 0.1 <= y.mean() <= 0.6

    x = np.log1p(features.to_numpy(dtype=float))
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert auc > 0.65  # the majority class scores 0.5
    assert auc < 0.97  # and it is not trivial
