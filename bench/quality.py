"""One table of model quality beside the peers, with bootstrap intervals, through the CLI's own jobs.

    .venv/bin/python bench/quality.py                      # every data set; appends the table to bench/RESULTS.md
    .venv/bin/python bench/quality.py --data cdnow --resamples 200 --no-append
    .venv/bin/python bench/quality.py --tiny                # a small subset of each, 2 epochs (what CI runs)

Needs the bench extras (``pip install '.[bench]'``: lightgbm, lifetimes) and ``../shared/data``.

Every ANN figure comes from the jobs a user runs: ``retail-ann import`` and ``features`` where the
data is a log, ``train --test-features TEST`` (fit and early stopping on the training rows only,
metrics on TEST) and ``score`` of TEST with the model written; the figures below are computed from
the predictions ``score`` wrote, joined to TEST's labels. The F1 is at each model's own threshold,
chosen without the test rows (the ANN's stored one, max F1 on its validation rows; the peers' max F1
on out-of-fold predictions of their training rows). Peers fit on the same training rows and predict
the same test rows:

- ``online_shoppers`` (UCI Online Shoppers, one row per session, label ``Revenue``): ``stratified``,
  scikit-learn's stratified 80:20 split (seed 42); ``out_of_time``, the sessions of Feb-Oct train and
  those of Nov-Dec are the test rows. ANN with ``conf/train_online_shoppers.yaml``; LightGBM (300
  trees, learning rate 0.03, 15 leaves, categoricals as category); logistic regression (one-hot
  categoricals, log1p + standardised numbers).
- ``cdnow`` (CDNOW master log): import; features as of 1997-10-01 from all history before it
  (lookback 273 days), labels to 1998-06-30 (horizon 273 days); customers split 80:20 by a hash of
  the id. Peers: BG/NBD (purchase: its expected purchases in the horizon, mapped to a probability by
  a logistic fit on the training customers) and BG/NBD + Gamma-Gamma (spend: expected purchases x
  expected value per purchase), both fitted by ``lifetimes`` on the calibration period (transactions
  before the cutoff) of the training customers and applied to the test customers' calibration
  history; LightGBM and logistic regression on the same feature table. ANN with ``conf/train.yaml``.
- ``online_retail`` (the 13-day UCI Online Retail sample): import; features as of 2010-12-08 from
  the 7 days before, labels from the 6 days after (to the last day of the data, so complete);
  customers split 80:20 by id hash; the same peers as CDNOW.

Each figure has a 95 % bootstrap interval over test rows (the same draws for every model, so the
``ANN - peer`` rows are paired intervals of the difference): a difference whose interval holds 0 is
no win. ``ANN before calibration`` is not a peer: the purchase network's own probability on the
same rows (from the model's weights, before the calibration ``score`` applies; the same
decisions), so that ``ANN - ANN before calibration`` shows what calibration does to the Brier.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
SHOPPERS = SHARED / "online_shoppers_intention.csv.gz"
CDNOW = SHARED / "CDNOW_master.txt.gz"
RETAIL = SHARED / "online_retail_sample.csv.gz"
RESULTS = ROOT / "bench" / "RESULTS.md"
SHOPPERS_CATEGORICAL = ["Month", "OperatingSystems", "Browser", "Region", "TrafficType", "VisitorType", "Weekend"]
OUT_OF_TIME_TEST_MONTHS = ("Nov", "Dec")
ANN = "ANN (retail-ann)"
UNCALIBRATED = "ANN before calibration"
LGBM = dict(n_estimators=300, learning_rate=0.03, num_leaves=15, verbose=-1)
PURCHASE_FIGURES = ("roc_auc", "pr_auc", "f1", "brier")
SPEND_FIGURES = ("r2", "mae", "rmse", "gini", "spearman", "decile_mape")


class LogSet(NamedTuple):
    """A log-based data set: how ``import`` reads it and the ``features`` window cut from it."""
    fmt: str
    log: Path
    as_of: dt.date
    lookback: int
    horizon: int
    recent: int
    has_customers: bool


LOGS = {
    "cdnow": LogSet("cdnow", CDNOW, dt.date(1997, 10, 1), 273, 273, 90, False),
    "online_retail": LogSet("online-retail", RETAIL, dt.date(2010, 12, 8), 7, 6, 3, True),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--data", nargs="+", default=["online_shoppers", "cdnow", "online_retail"],
                   choices=["online_shoppers", "cdnow", "online_retail"])
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"))
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap draws (default %(default)s)")
    p.add_argument("--tiny", action="store_true",
                   help="2,000 sessions / customers per data set, 2 epochs, 50 draws, nothing appended (CI)")
    p.add_argument("--no-append", action="store_true", help="print the table only")
    p.add_argument("--json", default=None, help="also write every figure and interval here")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------- the jobs
def cli(*args: str) -> None:
    """Run one ``retail-ann`` command in this process (the session is shared); fail on a non-zero exit."""
    from retail_ann.cli import main

    rc = main([*args, "--master", "local[2]", "--log-level", "WARNING"])
    if rc != 0:
        raise SystemExit(f"retail-ann {args[0]} exited {rc}")


def ann_predictions(train: str, test: str, out: Path, id_col: str, tiny: bool, config: Path | None = None,
                    score_args: tuple[str, ...] = ()) -> pd.DataFrame:
    """``train --test-features`` then ``score`` of the test table: the predictions table, by id, with
    the model's stored threshold in ``attrs`` and, in ``network_probability``, the purchase
    network's own probability before the calibration ``score`` applies."""
    model, predictions = out / "model", out / "predictions"
    shutil.rmtree(predictions, ignore_errors=True)
    cli("train", "--features", train, "--test-features", test, "--out", str(model), "--id-col", id_col,
        *(["--config", str(config)] if config else []), *(["--epochs", "2"] if tiny else []))
    cli("score", "--features", test, "--model", str(model), "--out", str(predictions), "--id-col", id_col, *score_args)
    spec = json.loads((model / "feature_spec.json").read_text())
    pred = pd.read_parquet(predictions).set_index(id_col)
    pred.attrs["threshold"] = spec["targets"].get("purchase", {}).get("threshold")
    if "purchase" in spec["targets"]:
        from retail_ann.artifact import load_artifact
        from retail_ann.model import forward

        artifact, rows = load_artifact(model), pd.read_parquet(test)
        raw = pd.Series(forward(artifact.weights["purchase"], artifact.spec.transform(rows)), index=rows[id_col].astype(str))
        pred["network_probability"] = raw.loc[pred.index.astype(str)].to_numpy()
    return pred


def ann_models(pred: pd.DataFrame) -> dict[str, dict]:
    """The ANN's purchase figures' inputs from its predictions: probability, decision, threshold;
    and its network's probability before calibration (the same decisions), so that the table shows
    what calibration changes."""
    decision = pred["predicted_purchase"].to_numpy()
    return {ANN: {"p": pred["purchase_probability"].to_numpy(), "decision": decision,
                  "threshold": pred.attrs["threshold"]},
            UNCALIBRATED: {"p": pred["network_probability"].to_numpy(), "decision": decision,
                           "threshold": pred.attrs["threshold"]}}


# ------------------------------------------------------------------------------------- the peers
def _design(train: pd.DataFrame, test: pd.DataFrame, categorical: list[str]):
    """(LightGBM frames with categoricals as category, logistic matrices: one-hot + log1p-standardised)."""
    from sklearn.preprocessing import StandardScaler

    known = [c for c in train.columns if train[c].notna().any()]   # an entirely empty column says nothing
    train, test = train[known], test[known]
    categorical = [c for c in categorical if c in known]
    numeric = [c for c in known if c not in categorical]
    lgb = []
    for df in (train, test):
        d = df.copy()
        for c in categorical:
            d[c] = pd.Categorical(d[c].astype(str), categories=sorted(train[c].astype(str).unique()))
        lgb.append(d)
    both = pd.concat([train, test], keys=["train", "test"])
    num = both[numeric].astype(float).fillna(both.loc["train", numeric].astype(float).median())
    num = np.sign(num) * np.log1p(np.abs(num))
    onehot = pd.get_dummies(both[categorical].astype(str), dtype=float) if categorical else pd.DataFrame(index=both.index)
    onehot = onehot.loc[:, onehot.loc["train"].sum() > 0]   # levels the training rows have
    scaler = StandardScaler().fit(num.loc["train"])
    lin = [np.hstack([scaler.transform(num.loc[k]), onehot.loc[k].to_numpy()]) for k in ("train", "test")]
    return lgb, lin


def _threshold(model_factory, x, y) -> float:
    """Max-F1 threshold on 3-fold out-of-fold probabilities of the training rows."""
    from sklearn.model_selection import StratifiedKFold

    from retail_ann.metrics import best_f1_threshold

    oof = np.empty(len(y))
    for fit, val in StratifiedKFold(3, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
        xf = x.iloc[fit] if hasattr(x, "iloc") else x[fit]
        xv = x.iloc[val] if hasattr(x, "iloc") else x[val]
        oof[val] = model_factory().fit(xf, y[fit]).predict_proba(xv)[:, 1]
    return best_f1_threshold(y, oof)[0]


def classic_purchase(train, test, y_train, categorical) -> dict[str, dict]:
    """LightGBM and logistic regression: test probabilities and out-of-fold thresholds."""
    import lightgbm
    from sklearn.linear_model import LogisticRegression

    (lgb_tr, lgb_te), (lin_tr, lin_te) = _design(train, test, categorical)
    peers = {
        "LightGBM": (lambda: lightgbm.LGBMClassifier(**LGBM, random_state=0), lgb_tr, lgb_te),
        "logistic regression": (lambda: LogisticRegression(max_iter=3000), lin_tr, lin_te),
    }
    out = {}
    for name, (factory, x_tr, x_te) in peers.items():
        model = factory().fit(x_tr, y_train)
        out[name] = {"p": model.predict_proba(x_te)[:, 1], "threshold": _threshold(factory, x_tr, y_train)}
    return out


def lgbm_spend(train, test, s_train, categorical) -> np.ndarray:
    import lightgbm

    (lgb_tr, lgb_te), _ = _design(train, test, categorical)
    return np.maximum(lightgbm.LGBMRegressor(**LGBM, random_state=0).fit(lgb_tr, s_train).predict(lgb_te), 0.0)


def bgnbd_peers(transactions: pd.DataFrame, as_of: dt.date, horizon: int, train_ids, test_ids,
                y_train: np.ndarray) -> dict[str, dict]:
    """BG/NBD (purchase) and BG/NBD + Gamma-Gamma (spend) from the calibration period before
    ``as_of``, fitted on the training customers, predicted for the test customers."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data
    from sklearn.linear_model import LogisticRegression

    from retail_ann.metrics import best_f1_threshold

    ts = transactions["ts"]
    transactions = transactions.assign(ts=ts.dt.tz_convert(None) if ts.dt.tz is not None else ts)   # naive UTC
    calib = transactions[transactions["ts"] < pd.Timestamp(as_of)].copy()
    calib["amount"] = calib["quantity"] * calib["unit_price"]
    end = pd.Timestamp(as_of) - pd.Timedelta(days=1)
    summary = summary_data_from_transaction_data(calib, "customer_id", "ts", monetary_value_col="amount",
                                                 observation_period_end=end, freq="D")
    fallback = {"frequency": 0.0, "recency": 0.0, "T": float(summary["T"].median()), "monetary_value": 0.0}

    def rows(ids):
        return summary.reindex(pd.Index(ids, name="customer_id")).fillna(fallback)

    tr, te = rows(train_ids), rows(test_ids)
    bg = _converged(lambda c: BetaGeoFitter(penalizer_coef=c).fit(tr["frequency"], tr["recency"], tr["T"]))
    expected = {k: bg.conditional_expected_number_of_purchases_up_to_time(horizon, d["frequency"], d["recency"], d["T"])
                .to_numpy() for k, d in (("train", tr), ("test", te))}
    link = LogisticRegression().fit(np.log1p(expected["train"]).reshape(-1, 1), y_train)
    p = {k: link.predict_proba(np.log1p(v).reshape(-1, 1))[:, 1] for k, v in expected.items()}
    repeat = tr[(tr["frequency"] > 0) & (tr["monetary_value"] > 0)]
    gg = _converged(lambda c: GammaGammaFitter(penalizer_coef=c).fit(repeat["frequency"], repeat["monetary_value"]))
    value = gg.conditional_expected_average_profit(te["frequency"], te["monetary_value"].clip(lower=0)).to_numpy()
    return {"BG/NBD": {"p": p["test"], "threshold": best_f1_threshold(y_train, p["train"])[0]},
            "BG/NBD + Gamma-Gamma": {"spend": expected["test"] * value}}


def _converged(fit):
    """``fit(penalizer)`` with the smallest of lifetimes' penalizers that converges (a week of history,
    as in the Online Retail sample, does not converge unpenalised)."""
    from lifetimes.utils import ConvergenceError

    for penalizer in (0.001, 0.01, 0.1, 1.0):
        try:
            with contextlib.redirect_stdout(io.StringIO()):   # lifetimes prints the optimiser's state on failure
                return fit(penalizer)
        except ConvergenceError:
            continue
    raise SystemExit("lifetimes did not converge with any penalizer up to 1.0")


# ------------------------------------------------------------------------------------- data sets
def online_shoppers(out: Path, tiny: bool) -> list[dict]:
    from sklearn.model_selection import train_test_split

    raw = pd.read_csv(SHOPPERS)
    raw.insert(0, "session_id", [f"s{i:05d}" for i in range(len(raw))])
    raw["Revenue"] = raw["Revenue"].astype(int)
    if tiny:
        raw = raw.sample(2000, random_state=0).sort_index()
    y = raw["Revenue"].to_numpy()
    splits = {
        "stratified": train_test_split(np.arange(len(raw)), test_size=0.2, stratify=y, random_state=42),
        "out_of_time": (np.flatnonzero(~raw["Month"].isin(OUT_OF_TIME_TEST_MONTHS)),
                        np.flatnonzero(raw["Month"].isin(OUT_OF_TIME_TEST_MONTHS))),
    }
    results = []
    for split, (tr, te) in splits.items():
        d = out / "online_shoppers" / split
        d.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, idx in (("train", tr), ("test", te)):
            paths[name] = str(d / f"{name}.parquet")
            raw.iloc[np.sort(idx)].to_parquet(paths[name], index=False)
        train, test = raw.iloc[np.sort(tr)], raw.iloc[np.sort(te)]
        pred = ann_predictions(paths["train"], paths["test"], d, "session_id", tiny,
                               config=ROOT / "conf" / "train_online_shoppers.yaml", score_args=("--as-of", "2000-01-01"))
        pred = pred.loc[test["session_id"]]
        x_cols = [c for c in raw.columns if c not in ("session_id", "Revenue")]
        peers = classic_purchase(train[x_cols], test[x_cols], train["Revenue"].to_numpy(), SHOPPERS_CATEGORICAL)
        results.append({"data": "Online Shoppers", "split": split, "train_rows": len(train), "test_rows": len(test),
                        "y": test["Revenue"].to_numpy(), "purchase": {**ann_models(pred), **peers}})
    return results


def log_table(name: str, out: Path, tiny: bool) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Log-based data set ``name`` imported and turned into its feature table under ``out / name``
    by the CLI's jobs: (the table, which of its rows are the test customers: the id hash's fifth,
    the imported transactions that BG/NBD reads)."""
    from retail_ann.schemas import AS_OF_DATE, CUSTOMER_ID

    fmt, log, as_of, lookback, horizon, recent, has_customers = LOGS[name]
    d = out / name
    raw, features = d / "raw", d / "features"
    cli("import", fmt, "--input", str(log), "--out", str(raw))
    shutil.rmtree(features, ignore_errors=True)
    cli("features", "--transactions", str(raw / "transactions"),
        *(["--customers", str(raw / "customers")] if has_customers else []), "--as-of", as_of.isoformat(),
        "--lookback-days", str(lookback), "--horizon-days", str(horizon), "--out", str(features),
        "--config", str(_features_config(d, recent)))
    manifest = json.loads((features / f"{AS_OF_DATE}={as_of}" / "_manifest.json").read_text())
    if not manifest["labels_complete"]:
        raise SystemExit(f"{name}: the label window runs past the data")
    table = pd.read_parquet(features)
    table[AS_OF_DATE] = table[AS_OF_DATE].astype(str)
    if tiny:
        table = table.sample(min(2000, len(table)), random_state=0)
    is_test = table[CUSTOMER_ID].map(lambda c: int(hashlib.md5(c.encode()).hexdigest(), 16) % 5 == 0).to_numpy()
    return table, is_test, pd.read_parquet(raw / "transactions")


def retail_log(name: str, out: Path, tiny: bool) -> list[dict]:
    from retail_ann.schemas import AS_OF_DATE, CUSTOMER_ID, FUTURE_SPEND, WILL_PURCHASE

    d = out / name
    table, is_test, transactions = log_table(name, out, tiny)
    paths = {}
    for part, rows in (("train", ~is_test), ("test", is_test)):
        paths[part] = str(d / f"{part}.parquet")
        table[rows].to_parquet(paths[part], index=False)
    train, test = table[~is_test], table[is_test]
    pred = ann_predictions(paths["train"], paths["test"], d, CUSTOMER_ID, tiny).loc[test[CUSTOMER_ID]]
    x_cols = [c for c in table.columns if c not in (CUSTOMER_ID, AS_OF_DATE, WILL_PURCHASE, FUTURE_SPEND)]
    categorical = [c for c in x_cols if table[c].dtype == object]
    y_train, s_train = train[WILL_PURCHASE].to_numpy(), train[FUTURE_SPEND].to_numpy()
    bg = bgnbd_peers(transactions, LOGS[name].as_of, LOGS[name].horizon, train[CUSTOMER_ID], test[CUSTOMER_ID], y_train)
    classic = classic_purchase(train[x_cols], test[x_cols], y_train, categorical)
    purchase = {**ann_models(pred), "BG/NBD": bg["BG/NBD"], **classic}
    spend = {ANN: {"spend": pred["predicted_spend"].to_numpy()},
             "BG/NBD + Gamma-Gamma": bg["BG/NBD + Gamma-Gamma"],
             "LightGBM": {"spend": lgbm_spend(train[x_cols], test[x_cols], s_train, categorical)}}
    title = {"cdnow": "CDNOW", "online_retail": "Online Retail sample"}[name]
    return [{"data": title, "split": "customers 80:20 by id hash", "train_rows": len(train), "test_rows": len(test),
             "y": test[WILL_PURCHASE].to_numpy(), "s": test[FUTURE_SPEND].to_numpy(),
             "purchase": purchase, "spend": spend}]


def _features_config(d: Path, recent: int) -> Path:
    """A features YAML with this data set's ``recent_days`` (the rest: the shipped defaults)."""
    d.mkdir(parents=True, exist_ok=True)
    path = d / "features.yaml"
    path.write_text(f"recent_days: {recent}\n")
    return path


# ------------------------------------------------------------------------------------- figures
def figures(result: dict, resamples: int) -> dict:
    """Each model's figures on the test rows, with paired bootstrap intervals, and ANN - peer."""
    from sklearn import metrics as skm

    from retail_ann.metrics import bootstrap_intervals, decile_mape, normalized_gini, spearman

    y, s = result["y"], result.get("s")
    purchase, spend = result["purchase"], result.get("spend", {})
    for m in purchase.values():
        m.setdefault("decision", (m["p"] >= m["threshold"]).astype(int))

    def stats(rows: np.ndarray) -> dict[str, float]:
        out = {}
        yr = y[rows]
        one_class = yr.min() == yr.max()
        for name, m in purchase.items():
            p = m["p"][rows]
            out[f"purchase|{name}|roc_auc"] = np.nan if one_class else skm.roc_auc_score(yr, p)
            out[f"purchase|{name}|pr_auc"] = np.nan if one_class else skm.average_precision_score(yr, p)
            out[f"purchase|{name}|f1"] = skm.f1_score(yr, m["decision"][rows], zero_division=0)
            out[f"purchase|{name}|brier"] = float(np.mean((p - yr) ** 2))
        for name, m in spend.items():
            sr, pr = s[rows], m["spend"][rows]
            out[f"spend|{name}|r2"] = skm.r2_score(sr, pr)
            out[f"spend|{name}|mae"] = float(np.mean(np.abs(sr - pr)))
            out[f"spend|{name}|rmse"] = float(np.sqrt(np.mean((sr - pr) ** 2)))
            out[f"spend|{name}|gini"] = normalized_gini(sr, pr)
            out[f"spend|{name}|spearman"] = spearman(sr, pr)
            out[f"spend|{name}|decile_mape"] = decile_mape(sr, pr)
        for target, models, names in (("purchase", purchase, PURCHASE_FIGURES), ("spend", spend, SPEND_FIGURES)):
            for peer in (m for m in models if m != ANN):
                for f in names:
                    out[f"{target}|ANN - {peer}|{f}"] = out[f"{target}|{ANN}|{f}"] - out[f"{target}|{peer}|{f}"]
        return out

    point = stats(np.arange(len(y)))
    ci = bootstrap_intervals(stats, len(y), resamples=resamples, seed=0)
    return {k: {"value": v, "ci": ci.get(k)} for k, v in point.items()}


def _cell(f: dict | None) -> str:
    if f is None or f["value"] is None or not np.isfinite(f["value"]):
        return "n/a"
    lo, hi = f["ci"]
    return f"{f['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def table(results: list[dict]) -> str:
    lines = ["| data set | split (train / test rows) | model | ROC-AUC | PR-AUC | F1 at its threshold | Brier |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        names = list(r["purchase"]) + [f"ANN - {p}" for p in r["purchase"] if p != ANN]
        for name in names:
            cells = [_cell(r["figures"].get(f"purchase|{name}|{k}")) for k in PURCHASE_FIGURES]
            lines.append(f"| {r['data']} | {r['split']} ({r['train_rows']} / {r['test_rows']}) | {name} | "
                         + " | ".join(cells) + " |")
    spend_rows = [r for r in results if r.get("spend")]
    if spend_rows:
        lines += ["", "| data set | model | R² | MAE | RMSE | normalized Gini | Spearman | decile MAPE |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in spend_rows:
            names = list(r["spend"]) + [f"ANN - {p}" for p in r["spend"] if p != ANN]
            for name in names:
                cells = [_cell(r["figures"].get(f"spend|{name}|{k}")) for k in SPEND_FIGURES]
                lines.append(f"| {r['data']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    missing = [p for p in (SHOPPERS, CDNOW, RETAIL) if not p.exists()]
    if missing:
        print(f"bench/quality.py: error: data not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    from retail_ann import __version__
    from retail_ann.spark import build_session

    build_session("bench-quality", master="local[2]",
                  conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"})
    out = Path(args.out)
    resamples = 50 if args.tiny else args.resamples
    started = time.time()
    results = []
    for name in args.data:
        t = time.time()
        runs = online_shoppers(out, args.tiny) if name == "online_shoppers" else retail_log(name, out, args.tiny)
        for r in runs:
            r["figures"] = figures(r, resamples)
            r["seconds"] = round(time.time() - t, 1)
            results.append(r)
    text = table(results)
    load = os.getloadavg()[0]
    header = (f"### Quality against the peers ({dt.date.today()}, retail-ann {__version__}"
              f"{', tiny subset' if args.tiny else ''})\n\n"
              f"`bench/quality.py{' --tiny' if args.tiny else ''}`: {platform.machine()}, {os.cpu_count()} cores, "
              f"load {load:.1f}, {round(time.time() - started)} s; 95 % bootstrap intervals over test rows "
              f"({resamples} paired draws); `ANN - peer` rows are the paired difference.\n")
    print(header + "\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if k in ("data", "split", "figures",
                                                                                     "train_rows", "test_rows")}
                                               for r in results], indent=1, default=float))
    if not (args.tiny or args.no_append):
        with RESULTS.open("a") as f:
            f.write("\n" + header + "\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
