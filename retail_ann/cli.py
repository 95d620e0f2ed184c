"""``retail-ann`` command line: one subcommand per pipeline step, plus ``demo``.

Exit codes: 0 success, 1 internal failure, 2 bad input or bad arguments. Errors are one line on
stderr (``--log-level DEBUG`` adds the traceback).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from retail_ann import __version__
from retail_ann.config import FeaturesConfig, GenerateConfig, default_config_path, load_config, parse_date
from retail_ann.errors import InputError
from retail_ann.logs import configure_logging

log = logging.getLogger("retail_ann")

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _common(p: argparse.ArgumentParser, job: str) -> None:
    g = p.add_argument_group("common options")
    g.add_argument("--config", default=None, help=f"YAML settings (default: conf/{job}.yaml when present)")
    g.add_argument("--master", default=None, help="Spark master when not run by spark-submit (default: $SPARK_MASTER or local[*])")
    g.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting, repeatable")
    g.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _spark_conf(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--conf expects KEY=VALUE, got {pair!r}")
        conf[key.strip()] = value.strip()
    return conf


def _config(cls, args: argparse.Namespace, job: str, overrides: dict):
    path = args.config or default_config_path(job)
    return load_config(cls, path, overrides)


def _session(args: argparse.Namespace, job: str):
    from retail_ann.spark import build_session

    return build_session(f"retail-ann-{job}", master=args.master, conf=_spark_conf(args.conf))


def cmd_generate(args: argparse.Namespace) -> int:
    from retail_ann.pipeline import run_generate

    cfg = _config(GenerateConfig, args, "generate", {
        "customers": args.customers, "days": args.days, "start": args.start, "seed": args.seed})
    manifest = run_generate(_session(args, "generate"), cfg, args.out)
    log.info("generated %s under %s", ", ".join(f"{k}={v}" for k, v in manifest["rows"].items()), args.out)
    return EXIT_OK


def cmd_features(args: argparse.Namespace) -> int:
    from retail_ann.pipeline import run_features

    as_of = parse_date(args.as_of, "--as-of")
    categories = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    cfg = _config(FeaturesConfig, args, "features", {
        "lookback_days": args.lookback_days, "horizon_days": args.horizon_days, "categories": categories})
    run_features(_session(args, "features"), cfg, as_of, args.transactions, args.out,
                 clickstream=args.clickstream, customers=args.customers, fmt=args.format)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-ann",
        description="Predict online-retail customer behaviour (will they buy, how much) with Spark and a neural network.",
    )
    parser.add_argument("--version", action="version", version=f"retail-ann {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="write a synthetic shop (customers, transactions, clickstream) as Parquet",
                       description="Generate a synthetic shop in parallel with Spark: DIR/customers, DIR/transactions, DIR/clickstream.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (replaced)")
    p.add_argument("--customers", type=int, help="number of customers (default from config: 3000)")
    p.add_argument("--days", type=int, help="days of history (default 240)")
    p.add_argument("--start", help="first day, YYYY-MM-DD (default 2024-01-01)")
    p.add_argument("--seed", type=int, help="random seed; same seed, same data (default 42)")
    _common(p, "generate")
    p.set_defaults(handler=cmd_generate)

    p = sub.add_parser("features", help="aggregate raw logs into one feature row per customer as of a date",
                       description="Per-customer features from [as_of - lookback, as_of) and labels from "
                                   "[as_of, as_of + horizon), written to OUT/as_of_date=YYYY-MM-DD/. "
                                   "Invalid rows go to OUT/_rejected/<table>/ with a reason.")
    p.add_argument("--transactions", required=True, metavar="PATH", help="transactions: file or directory")
    p.add_argument("--clickstream", metavar="PATH", help="clickstream: file or directory (optional)")
    p.add_argument("--customers", metavar="PATH", help="customers: file or directory (optional)")
    p.add_argument("--as-of", required=True, metavar="YYYY-MM-DD", help="cutoff date (midnight UTC)")
    p.add_argument("--lookback-days", type=int, help="feature window length (default 365)")
    p.add_argument("--horizon-days", type=int, help="label window length (default 90)")
    p.add_argument("--categories", metavar="A,B,...", help="categories with their own columns (default: most frequent)")
    p.add_argument("--format", choices=["parquet", "csv", "json", "delta"], help="input format (default: from extension)")
    p.add_argument("--out", required=True, metavar="DIR", help="feature table root")
    _common(p, "features")
    p.set_defaults(handler=cmd_features)
    return parser


def _run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from pyspark.errors import AnalysisException

    try:
        return handler(args)
    except InputError as e:
        log.debug("bad input", exc_info=True)
        print(f"retail-ann {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except AnalysisException as e:
        log.debug("spark rejected the input", exc_info=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"retail-ann {args.command}: error: {first}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # the one place that turns any failure into exit 1 and one line
        log.debug("failure", exc_info=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"retail-ann {args.command}: failed: {type(e).__name__}: {first}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    return _run(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
