"""Spend levers chosen on selection splits: CDNOW spend R² of the ANN beside BG/NBD + Gamma-Gamma,
on splits of the quality table's *training* customers only (its test customers never enter).

    .venv/bin/python bench/spend_target.py                                     # conf/train.yaml's defaults
    .venv/bin/python bench/spend_target.py --set spend_target=ziln --splits 1 2 3
    .venv/bin/python bench/spend_target.py --tiny     # 2,000 customers, one split, 2 epochs (CI)

The feature table is ``bench/quality.py``'s own (``log_table``: ``retail-ann import cdnow``, features
as of 1997-10-01 over the 273 days before, labels over the 273 days after); its customers outside
the id-hash fifth that the quality table reports are split again, 80:20 stratified on
``will_purchase`` by each split seed. On each split ``train_frame`` trains with the defaults (the
training seed = the split seed) and ``--set`` overrides, the test rows given, and
``bench/quality.py``'s ``bgnbd_peers`` fits BG/NBD + Gamma-Gamma on the same training customers.
Printed per split and as the mean: spend R² of both, the ANN's normalized Gini and purchase
ROC-AUC. Choose a lever on these figures, then run the quality table once.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--splits", type=int, nargs="+", default=list(range(1, 10)), help="split seeds (default 1-9)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"),
                   help="the quality table's directory (its CDNOW import and feature table are rebuilt there)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="TrainConfig override, repeatable")
    p.add_argument("--tiny", action="store_true", help="2,000 customers, split 1 only, 2 epochs (CI)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from sklearn.model_selection import train_test_split

    from online_shoppers import _overrides
    from quality import LOGS, bgnbd_peers, log_table
    from retail_ann.config import TrainConfig
    from retail_ann.logs import configure_logging
    from retail_ann.metrics import regression_metrics
    from retail_ann.schemas import CUSTOMER_ID, FUTURE_SPEND, WILL_PURCHASE
    from retail_ann.training import train_frame

    configure_logging("WARNING")
    out = Path(args.out)
    table, is_test, transactions = log_table("cdnow", out, tiny=args.tiny)
    customers = table[~is_test].sort_values(CUSTOMER_ID).reset_index(drop=True)   # the split by position is then stable
    cdnow = LOGS["cdnow"]
    overrides = {**({"epochs": 2} if args.tiny else {}), **_overrides(args.set)}
    results = []
    for seed in [1] if args.tiny else args.splits:
        tr, te = train_test_split(np.arange(len(customers)), test_size=0.2, random_state=seed,
                                  stratify=customers[WILL_PURCHASE])
        train, test = customers.iloc[np.sort(tr)], customers.iloc[np.sort(te)]
        cfg = TrainConfig(**{"task": "both", "seed": seed, "report": False, **overrides})
        started = time.time()
        r = train_frame(train, str(out / "cdnow" / "selection" / f"split{seed}"), cfg, test_pdf=test)
        peer = bgnbd_peers(transactions, cdnow.as_of, cdnow.horizon, train[CUSTOMER_ID], test[CUSTOMER_ID],
                           train[WILL_PURCHASE].to_numpy())["BG/NBD + Gamma-Gamma"]["spend"]
        gg = regression_metrics(test[FUTURE_SPEND].to_numpy(), peer)
        ann = r["spend"]["ann"]
        results.append({"split": seed, "train_rows": len(train), "test_rows": len(test), "r2": ann["r2"],
                        "gini": ann["gini"], "gamma_gamma_r2": gg["r2"], "mean_ratio": ann["mean_predicted"] / ann["mean_actual"],
                        "purchase_roc_auc": r["purchase"]["ann"]["roc_auc"], "seconds": round(time.time() - started, 1)})
        print(f"split {seed}: spend R2 {ann['r2']:.3f} (BG/NBD + Gamma-Gamma {gg['r2']:.3f}), Gini {ann['gini']:.3f}, "
              f"mean predicted / actual {results[-1]['mean_ratio']:.3f}, "
              f"purchase ROC-AUC {results[-1]['purchase_roc_auc']:.4f}, {results[-1]['seconds']} s", flush=True)
    means = {k: float(np.mean([r[k] for r in results]))
             for k in ("r2", "gamma_gamma_r2", "gini", "mean_ratio", "purchase_roc_auc")}
    print(f"mean of {len(results)} ({', '.join(args.set) or 'defaults'}): spend R2 {means['r2']:.3f} "
          f"(BG/NBD + Gamma-Gamma {means['gamma_gamma_r2']:.3f}), Gini {means['gini']:.3f}, "
          f"mean predicted / actual {means['mean_ratio']:.3f}, purchase ROC-AUC {means['purchase_roc_auc']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"set": args.set, "customers": len(customers), "splits": results,
                                               "mean": means}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
