"""Time generate → features at a given shop size on local Spark and print one JSON line.

    .venv/bin/python bench/pipeline_scale.py --customers 1000000 --days 365 --out /tmp/bench_shop

Reports wall seconds per stage, rows per table, feature rows and peak RSS of the process tree is
left to the caller (run under /usr/bin/time -v for that).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time

from retail_ann.config import FeaturesConfig, GenerateConfig, parse_date
from retail_ann.logs import configure_logging
from retail_ann.pipeline import run_features, run_generate
from retail_ann.spark import build_session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--start", default="2024-01-01")
    ap.add_argument("--lookback-days", type=int, default=180)
    ap.add_argument("--horizon-days", type=int, default=60)
    ap.add_argument("--out", default="bench/out/shop")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--skip-generate", action="store_true", help="reuse the shop already at --out/raw")
    args = ap.parse_args()
    configure_logging("INFO")
    spark = build_session("bench-pipeline-scale", master=args.master)
    raw, feats = f"{args.out}/raw", f"{args.out}/features"
    result: dict = {"customers": args.customers, "days": args.days, "master": args.master,
                    "cores": os.cpu_count(), "machine": platform.machine()}
    if not args.skip_generate:
        t = time.perf_counter()
        gen = run_generate(spark, GenerateConfig(customers=args.customers, days=args.days, start=args.start), raw)
        result["generate_s"] = round(time.perf_counter() - t, 1)
        result["generate_stage_s"] = gen["seconds"]
        result["rows"] = gen["rows"]
    as_of = parse_date(args.start) + dt.timedelta(days=args.days - args.horizon_days)
    t = time.perf_counter()
    man = run_features(spark, FeaturesConfig(lookback_days=args.lookback_days, horizon_days=args.horizon_days),
                       as_of, f"{raw}/transactions", feats, clickstream=f"{raw}/clickstream",
                       customers=f"{raw}/customers")
    result["features_s"] = round(time.perf_counter() - t, 1)
    result["feature_rows"] = man["rows"]
    result["purchase_rate"] = man["purchase_rate"]
    result["as_of"] = as_of.isoformat()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
