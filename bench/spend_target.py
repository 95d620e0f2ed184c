"""Which spend target predicts next-period spend best: R² of every ``spend_target`` beside ridge/mean.

    .venv/bin/python bench/spend_target.py                                   # CDNOW and a generated shop
    .venv/bin/python bench/spend_target.py --data cdnow --seeds 42 1 --set hidden_units=64,32

Data sets, both turned into a feature table by the pipeline's own ``run_features``:
- ``cdnow``: ``../shared/data/CDNOW_master.txt.gz`` (23,570 customers, 1997-01..1998-06) imported
  by ``retail-ann import cdnow`` (one order per line, category ``cd``, unit price = dollars / CDs), features as
  of 1997-10-01 over the 273 days before, labels over the 273 days after (to 1998-06-30);
- ``generated``: ``retail-ann generate`` with ``--customers`` (default 20,000) over 2024, features
  as of 2024-11-01, lookback 180, horizon 60.
For each split seed (``split_seed``: the sample, test rows and validation folds), training seed
(``--train-seeds``, default the split seed) and target, ``train_table`` trains task ``both`` and the
script prints the spend R², normalized Gini, MAE and mean prediction / mean actual on the 20 % test
rows, beside the ridge and mean baselines of the same split, and the purchase ROC-AUC.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CDNOW = ROOT.parent / "shared" / "data" / "CDNOW_master.txt.gz"
TARGETS = ("two_stage", "ziln", "log1p", "raw")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=["cdnow", "generated"], choices=["cdnow", "generated"])
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="split seeds (split_seed)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=None,
                   help="training seeds tried on each split (default: the split seed itself)")
    p.add_argument("--customers", type=int, default=20_000, help="generated shop size")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "spend_target"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="TrainConfig override, repeatable")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def build_features(spark, name: str, out: Path, customers: int) -> str:
    """The feature table for data set ``name`` under ``out`` (built once, reused after)."""
    from retail_ann.config import FeaturesConfig, GenerateConfig
    from retail_ann.pipeline import run_features, run_generate, run_import

    features = out / name / "features"
    if (features / "_SUCCESS").exists() or any(features.glob("as_of_date=*/_SUCCESS")):
        return str(features)
    if name == "cdnow":
        raw = out / name / "raw"
        run_import(spark, "cdnow", str(CDNOW), str(raw))
        run_features(spark, FeaturesConfig(lookback_days=273, horizon_days=273, recent_days=90),
                     dt.date(1997, 10, 1), f"{raw}/transactions", str(features))
    else:
        raw = out / name / "raw"
        run_generate(spark, GenerateConfig(customers=customers, days=366, start="2024-01-01"), str(raw))
        run_features(spark, FeaturesConfig(lookback_days=180, horizon_days=60), dt.date(2024, 11, 1),
                     f"{raw}/transactions", str(features), clickstream=f"{raw}/clickstream",
                     customers=f"{raw}/customers")
    return str(features)


def main(argv=None) -> int:
    args = parse_args(argv)
    from retail_ann.config import TrainConfig
    from retail_ann.logs import configure_logging
    from retail_ann.spark import build_session
    from retail_ann.training import train_table

    sys.path.insert(0, str(ROOT / "bench"))
    from online_shoppers import _overrides

    configure_logging("WARNING")
    out = Path(args.out)
    spark = build_session("bench-spend-target", master="local[2]",
                          conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"})
    results = []
    for name in args.data:
        features = build_features(spark, name, out, args.customers)
        for seed in args.seeds:
            for train_seed in args.train_seeds or [seed]:
                for target in args.targets:
                    cfg = TrainConfig(**{"task": "both", "seed": train_seed, "split_seed": seed, "spend_target": target,
                                         "report": False, **_overrides(args.set)})
                    t = time.time()
                    r = train_table(spark, features, str(out / name / f"model_{target}_seed{seed}_{train_seed}"), cfg)
                    spend = r["spend"]
                    results.append({"data": name, "seed": seed, "train_seed": train_seed, "target": target,
                                    "seconds": round(time.time() - t, 1), "rows": r["data"].get("rows_sampled"),
                                    "purchase_roc_auc": r.get("purchase", {}).get("ann", {}).get("roc_auc"),
                                    **{k: spend[k] for k in spend}})
                    ann, ridge, mean = spend["ann"], spend["baseline_ridge"], spend["baseline_mean"]
                    print(f"{name:>9} split {seed:>3} seed {train_seed:>3} {target:>9}: R2 {ann['r2']:.3f} "
                          f"(ridge {ridge['r2']:.3f}, mean {mean['r2']:.3f}), Gini {ann['gini']:.3f}, "
                          f"MAE {ann['mae']:.2f}, mean predicted/actual {ann['mean_predicted'] / ann['mean_actual']:.3f}, "
                          f"purchase ROC-AUC {results[-1]['purchase_roc_auc'] or float('nan'):.4f}, "
                          f"{results[-1]['seconds']} s", flush=True)
    spark.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
