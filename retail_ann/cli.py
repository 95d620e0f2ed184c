"""``retail-ann`` command line: one subcommand per pipeline step, plus ``demo``.

Exit codes: 0 success, 1 internal failure, 2 bad input or bad arguments, 143 stopped by SIGTERM.
Errors are one line on stderr (``--log-level DEBUG`` adds the traceback).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

import yaml

from retail_ann import __version__
from retail_ann.config import (
    DemoConfig, FeaturesConfig, GenerateConfig, ScoreConfig, TrainConfig, default_config_path, load_config, parse_date,
)
from retail_ann.errors import InputError
from retail_ann.logs import configure_logging, use_real_stderr

log = logging.getLogger("retail_ann")

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
EXIT_TERMINATED = 128 + signal.SIGTERM   # 143, as a shell reports a process SIGTERM ended


def _common(p: argparse.ArgumentParser, job: str) -> None:
    g = p.add_argument_group("common options")
    g.add_argument("--config", default=None, help=f"YAML settings (default: conf/{job}.yaml when present)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help=f"any setting of conf/{job}.yaml, over the file (a value as YAML reads it: 7, true, "
                        "[64, 32]); repeatable; the flags above win over it")
    g.add_argument("--master", default=None, help="Spark master when not run by spark-submit (default: $SPARK_MASTER or local[*])")
    g.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting, repeatable")
    g.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="retail-ann's log on stderr (default INFO; Spark's own is WARN: conf/log4j2.properties)")
    g.add_argument("--json", action="store_true",
                   help="print what was written as JSON (the manifest, one object a line) instead of the summary")


_TABLE_ARGS = ("transactions", "clickstream", "customers", "features", "test_features")   # tables a job reads
_PATH_ARGS = (*_TABLE_ARGS, "input", "out", "model")


def _formats(p: argparse.ArgumentParser, output: str | None, default_output: str = "parquet",
             deprecated_format: str | None = None) -> None:
    """``--input-format`` and ``--input-version`` (every job that reads a table), ``--output-format``
    when ``output`` names what is written, and ``--format``, the old flag, as an alias of
    ``deprecated_format`` (``input`` or ``output``) for one release."""
    from retail_ann.config import OUTPUT_FORMATS
    from retail_ann.inputs import INPUT_FORMATS

    p.add_argument("--input-format", choices=INPUT_FORMATS,
                   help="input format (default auto: from the extension or the files, a _delta_log means delta)")
    p.add_argument("--input-version", type=int, metavar="N", help="read the Delta input as of commit N")
    if output:
        p.add_argument("--output-format", choices=OUTPUT_FORMATS,
                       help=f"{output}: parquet (partitions published atomically) or delta (one replaceWhere commit "
                            f"per run); default {default_output}")
    if deprecated_format:
        p.add_argument("--format", dest="deprecated_format", metavar="F",
                       help=f"deprecated: use --{deprecated_format}-format")
    p.set_defaults(deprecated_format_of=deprecated_format)


def _resolve_formats(args: argparse.Namespace) -> None:
    """Map the deprecated ``--format`` onto the flag it stood for, with a warning."""
    old = getattr(args, "deprecated_format", None)
    if old is None:
        return
    target = f"{args.deprecated_format_of}_format"
    log.warning("--format is deprecated: use --%s-format", args.deprecated_format_of)
    if getattr(args, target, None) is None:
        setattr(args, target, old)


def _needs_delta(args: argparse.Namespace, output_format: str | None = None) -> bool:
    """Whether the session needs Delta's jars: Delta output, a Delta input named, or a local input
    directory holding a ``_delta_log``."""
    from retail_ann import io

    if output_format == "delta" or getattr(args, "input_format", None) == "delta":
        return True
    paths = [getattr(args, n, None) for n in _TABLE_ARGS]
    return any(p and io.is_local(p) and (io.local_path(p) / "_delta_log").is_dir() for p in paths)


def _spark_conf(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--conf expects KEY=VALUE, got {pair!r}")
        conf[key.strip()] = value.strip()
    return conf


def _config(cls, args: argparse.Namespace, job: str, overrides: dict):
    """``cls`` from the job's YAML, then ``--set`` pairs, then the flags given (``overrides``). A
    setting refused is named by its flag when it has one (``--lookback-days must be positive``)."""
    path = args.config or default_config_path(job)
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return load_config(cls, path, {**_settings(args.settings, cls), **given})
    except InputError as e:
        key = re.match(r"\w+", str(e))
        if key and key.group() in overrides:
            flag = "--" + key.group().replace("_", "-")
            raise InputError(f"{flag}{str(e)[key.end():]} ({key.group()} in the config or --set)") from None
        raise


def _settings(pairs: list[str], cls) -> dict:
    """``--set KEY=VALUE`` pairs as config values (parsed as YAML values); an unknown key is named
    with the closest known one."""
    known = sorted(f.name for f in dataclasses.fields(cls))
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set expects KEY=VALUE, got {pair!r}")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise InputError(f"--set {key}: no such setting" + (f" (did you mean {close[0]}?)" if close else "")
                             + f"; settings: {', '.join(known)}")
        try:
            settings[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            settings[key] = value
    return settings


def _session(args: argparse.Namespace, job: str, delta: bool = False):
    from retail_ann.spark import build_session, session_conf

    paths = [getattr(args, name, None) for name in _PATH_ARGS]
    return build_session(f"retail-ann-{job}", master=args.master,
                         conf=session_conf(paths, delta, _spark_conf(args.conf)), job=job)


@dataclasses.dataclass
class Outcome:
    """What a command did: ``lines`` for people (stdout), ``manifests`` for schedulers (``--json``:
    one JSON object a line)."""

    lines: list[str]
    manifests: list[dict]


def _rows(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())


def cmd_generate(args: argparse.Namespace) -> Outcome:
    from retail_ann.pipeline import run_generate

    cfg = _config(GenerateConfig, args, "generate", {
        "customers": args.customers, "days": args.days, "start": args.start, "seed": args.seed})
    manifest = run_generate(_session(args, "generate"), cfg, args.out)
    return Outcome([f"wrote {_rows(manifest['rows'])} rows under {args.out}"], [manifest])


def cmd_import(args: argparse.Namespace) -> Outcome:
    from retail_ann.pipeline import run_import

    cfg = _config(FeaturesConfig, args, "features", {})
    m = run_import(_session(args, "import"), args.format, args.input, args.out, cfg)
    return Outcome([f"read {args.input} ({args.format}); wrote {_rows(m['rows'])} rows under {args.out}; "
                    f"rejected {sum(m['rejected'].values()):,} rows"], [m])


def cmd_features(args: argparse.Namespace) -> Outcome:
    from retail_ann.pipeline import check_features_request, run_features
    from retail_ann.schemas import AS_OF_DATE

    dates = sorted({parse_date(d, "--as-of") for d in _csv_list(args.as_of)})
    if not dates:
        raise InputError("--as-of needs a date (YYYY-MM-DD), or several separated by commas")
    categories = _csv_list(args.categories) or None
    cfg = _config(FeaturesConfig, args, "features", {
        "lookback_days": args.lookback_days, "horizon_days": args.horizon_days, "categories": categories,
        "output_format": args.output_format})
    for as_of in dates:   # before a session starts
        check_features_request(cfg, as_of, args.out, {"transactions": args.transactions,
                                                      "clickstream": args.clickstream, "customers": args.customers})
    if args.input_version is not None:
        raise InputError("--input-version is for train and score (features reads three tables)")
    spark = _session(args, "features", delta=_needs_delta(args, cfg.output_format))
    manifests = [run_features(spark, cfg, as_of, args.transactions, args.out, clickstream=args.clickstream,
                              customers=args.customers, fmt=args.input_format)
                 for as_of in dates]   # one partition each, published as it is done
    return Outcome([f"as of {m[AS_OF_DATE]}: wrote {m['rows']:,} customers (purchase rate {m['purchase_rate']:.3f}) "
                    f"to {args.out.rstrip('/')}/{AS_OF_DATE}={m[AS_OF_DATE]}; rejected "
                    f"{sum(m['rejected'].values()):,} input rows" for m in manifests], manifests)


def _csv_list(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def cmd_train(args: argparse.Namespace) -> Outcome:
    from retail_ann.training import train_table

    cfg = _config(TrainConfig, args, "train", {
        "task": args.task, "label": args.label, "spend_label": args.spend_label, "id_col": args.id_col,
        "categorical": _csv_list(args.categorical), "exclude": _csv_list(args.exclude),
        "sample_rows": args.sample_rows, "split": args.split, "epochs": args.epochs,
        "batch_size": args.batch_size, "seed": args.seed, "allow_incomplete_labels": args.allow_incomplete_labels})
    holdout = parse_date(args.holdout_as_of, "--holdout-as-of") if args.holdout_as_of else None
    if holdout is not None and args.test_features:   # before a session starts
        raise InputError("--holdout-as-of and --test-features both name the test rows: give one")
    result = train_table(_session(args, "train", delta=_needs_delta(args)), args.features, args.out, cfg,
                         fmt=args.input_format, test_path=args.test_features, version=args.input_version,
                         holdout_as_of=holdout)
    data = result["data"]
    lines = [f"model {result['version']} written to {args.out}: trained on {data['rows_fit'] + data['rows_validation']:,} "
             f"rows, tested on {data['rows_test']:,} ({data['split']})"]
    for task, key, baseline in (("purchase", "roc_auc", "baseline_logistic"), ("spend", "r2", "baseline_ridge")):
        if task in result:
            ann, base = result[task]["ann"].get(key), result[task].get(baseline, {}).get(key)
            lines.append(f"  {task} on the test rows: {key} " + ("n/a" if ann is None else f"{ann:.4f}")
                         + ("" if base is None else f" ({baseline.removeprefix('baseline_')} {base:.4f})"))
    return Outcome(lines, [{k: v for k, v in result.items() if k != "training"}])


def cmd_score(args: argparse.Namespace) -> Outcome:
    from retail_ann.pipeline import check_output
    from retail_ann.scoring import score_table

    as_of = parse_date(args.as_of, "--as-of") if args.as_of else None
    cfg = _config(ScoreConfig, args, "score", {
        "engine": args.engine, "batch_rows": args.batch_rows, "output_format": args.output_format, "id_col": args.id_col,
        "explain": args.explain})
    check_output(args.out, {"features": args.features, "model": args.model})   # before a session starts
    spark = _session(args, "score", delta=_needs_delta(args, cfg.output_format))
    m = score_table(spark, args.features, args.model, args.out, cfg, as_of=as_of, fmt=args.input_format,
                    version=args.input_version)
    return Outcome([f"scored {m['rows_out']:,} rows as of {', '.join(m['as_of_dates'])} with model {m['model_version']} "
                    f"into {args.out}; rejected {m['rows_rejected']:,} rows"], [m])


def cmd_demo(args: argparse.Namespace) -> Outcome:
    from retail_ann.pipeline import run_demo

    cfg = _config(DemoConfig, args, "demo", {"customers": args.customers, "seed": args.seed})
    train_cfg = load_config(TrainConfig, default_config_path("train"), {"epochs": args.epochs})
    score_cfg = load_config(ScoreConfig, default_config_path("score"))
    result = run_demo(_session(args, "demo"), cfg, args.out, train_cfg, score_cfg)
    return Outcome(_demo_summary(result, args.out), [result["features"], result["score"]])


def _demo_summary(result: dict, out: str) -> list[str]:
    """A short table of what the demo produced."""
    metrics = result["metrics"]
    lines = [f"{result['features']['rows']} customers as of {result['features']['as_of_date']}, "
             f"purchase rate {result['features']['purchase_rate']:.3f}"]
    for task, keys in (("purchase", ("roc_auc", "pr_auc", "f1")), ("spend", ("r2", "mae", "rmse"))):
        for who, figures in metrics.get(task, {}).items():
            if isinstance(figures, dict) and any(k in figures for k in keys):
                shown = ", ".join(f"{k} {figures[k]:.3f}" for k in keys if isinstance(figures.get(k), (int, float)))
                lines.append(f"  {task:<8} {who:<20} {shown}")
    lines += [f"  predictions: {result['score']['rows_out']} rows at {result['score']['rows_per_s']} rows/s",
              f"  model + report: {out.rstrip('/')}/model/report.html", f"  predictions: {out.rstrip('/')}/predictions"]
    return lines


class StrictParser(argparse.ArgumentParser):
    """argparse without abbreviations (``--epoch`` is not taken for ``--epochs``), whose subcommands
    name a misspelled flag, with the flag it most likely meant, before anything else is checked."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        if self._subparsers is None:   # a subcommand's parser: its own flags are all it knows
            self._refuse_unknown_flags(sys.argv[1:] if args is None else list(args))
        return super().parse_known_args(args, namespace)

    def _refuse_unknown_flags(self, args: list[str]) -> None:
        known = set(self._option_string_actions)
        for token in args:
            if token == "--":
                break
            name = token.split("=", 1)[0]
            if name.startswith("--") and name not in known:
                close = difflib.get_close_matches(name, sorted(k for k in known if k.startswith("--")), n=1, cutoff=0.75)
                self.error(f"unrecognized argument {name}" + (f" (did you mean {close[0]}?)" if close else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(
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

    from retail_ann.importers import FORMATS

    p = sub.add_parser("import", help="convert a public retail log into the canonical transactions/customers tables",
                       description="Read a public retail log and write DIR/transactions (and DIR/customers when the "
                                   "log has customers) as Parquet for `features`, replacing them. Rows are validated "
                                   "as `features` validates them (limits from --config, default conf/features.yaml); "
                                   "rejects go to DIR/_rejected/<table>/format=<FORMAT>/ with a reason.")
    p.add_argument("format", choices=list(FORMATS), metavar="FORMAT",
                   help=f"log format: {', '.join(FORMATS)} (see retail_ann/importers/)")
    p.add_argument("--input", required=True, metavar="PATH", help="the log: file or directory (.gz is fine)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for the canonical tables")
    _common(p, "features")   # validation limits come from the features config
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("features", help="aggregate raw logs into one feature row per customer as of a date",
                       description="Per-customer features from [as_of - lookback, as_of) and labels from "
                                   "[as_of, as_of + horizon), written to OUT/as_of_date=YYYY-MM-DD/. "
                                   "Invalid rows go to OUT/_rejected/<table>/ with a reason.")
    p.add_argument("--transactions", required=True, metavar="PATH", help="transactions: file or directory")
    p.add_argument("--clickstream", metavar="PATH", help="clickstream: file or directory (optional)")
    p.add_argument("--customers", metavar="PATH", help="customers: file or directory (optional)")
    p.add_argument("--as-of", required=True, metavar="YYYY-MM-DD[,...]",
                   help="cutoff date (midnight UTC); several separated by commas make one partition each")
    p.add_argument("--lookback-days", type=int, help="feature window length (default 365)")
    p.add_argument("--horizon-days", type=int, help="label window length (default 90)")
    p.add_argument("--categories", metavar="A,B,...", help="categories with their own columns (default: most frequent)")
    _formats(p, "the feature table", deprecated_format="input")
    p.add_argument("--out", required=True, metavar="DIR", help="feature table root")
    _common(p, "features")
    p.set_defaults(handler=cmd_features)

    p = sub.add_parser("train", help="train the purchase and spend MLPs on a feature table",
                       description="Sample a feature table to the driver, fit the preprocessing on the training "
                                   "part, train Keras MLPs, evaluate them beside baselines and write a versioned "
                                   "model directory (spec, weights, metrics, model card, report).")
    p.add_argument("--features", required=True, metavar="PATH", help="feature table (any table with a label works)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory (replaced atomically)")
    p.add_argument("--test-features", metavar="PATH",
                   help="evaluate on this table's rows (e.g. a later as_of_date, or held-out customers) and train "
                        "on every row of --features, instead of holding out --split of them")
    p.add_argument("--holdout-as-of", metavar="YYYY-MM-DD",
                   help="out of time: test on this as_of_date partition of --features and train on the earlier "
                        "ones whose label window has ended by then (needs their manifests)")
    _formats(p, None, deprecated_format="input")
    p.add_argument("--task", choices=["auto", "purchase", "spend", "both"], help="what to train (default auto)")
    p.add_argument("--label", metavar="COL", help="binary purchase label (default will_purchase); implies --task purchase")
    p.add_argument("--spend-label", metavar="COL", help="spend label (default future_spend)")
    p.add_argument("--id-col", metavar="COL", help="id column, never a feature (default customer_id)")
    p.add_argument("--categorical", metavar="A,B", help="integer-coded columns to one-hot")
    p.add_argument("--exclude", metavar="A,B", help="columns that are not features")
    p.add_argument("--sample-rows", type=int, metavar="N", help="rows sampled to the driver at most (default 200000)")
    p.add_argument("--split", type=float, help="held-out test share (default 0.2)")
    p.add_argument("--epochs", type=int, help="training epochs at most (default 50; early stopping)")
    p.add_argument("--batch-size", type=int, help="mini-batch size (default 32)")
    p.add_argument("--seed", type=int,
                   help="seed for sampling, split and initialisation (default 42; split_seed in the config fixes the rows)")
    p.add_argument("--allow-incomplete-labels", action="store_true", default=None,
                   help="train on feature partitions whose label window runs past the data (their manifest says "
                        "labels_complete: false); refused by default")
    _common(p, "train")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("score", help="score a feature table with a trained model",
                       description="Score every row on the executors (Arrow batches, numpy forward pass) and write "
                                   "OUT/as_of_date=YYYY-MM-DD/ with _manifest.json; a rerun replaces that date only.")
    p.add_argument("--features", required=True, metavar="PATH", help="feature table")
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="model directory written by train")
    p.add_argument("--out", required=True, metavar="DIR", help="predictions root")
    _formats(p, "the predictions", deprecated_format="output")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="score only this date (required if the table has no as_of_date)")
    p.add_argument("--id-col", metavar="COL", help="id column (default customer_id)")
    p.add_argument("--engine", choices=["numpy", "keras"], help="numpy (default; no TensorFlow on executors) or keras")
    p.add_argument("--batch-rows", type=int, metavar="N", help="rows per Arrow batch (default 10000)")
    p.add_argument("--explain", type=int, metavar="K",
                   help="add reason codes: reason_1..reason_K, the feature table columns that raised each purchase "
                        "score most, and reason_1_contribution.. by how much on the logit scale "
                        f"(default {ScoreConfig.explain}: none)")
    _common(p, "score")
    p.set_defaults(handler=cmd_score)

    p = sub.add_parser("demo", help="run the whole pipeline on a generated shop",
                       description="Generate a shop into OUT/raw, build OUT/features, train OUT/model (with report.html) and "
                                   "score into OUT/predictions (settings: conf/demo.yaml, conf/train.yaml, conf/score.yaml).")
    p.add_argument("--out", default="out/demo", metavar="DIR", help="output root (default out/demo)")
    p.add_argument("--customers", type=int, help="shop size (default from config: 5000)")
    p.add_argument("--seed", type=int, help="random seed (default 42)")
    p.add_argument("--epochs", type=int, help="training epochs at most (default from conf/train.yaml)")
    _common(p, "demo")
    p.set_defaults(handler=cmd_demo)
    for name, sub_parser in sub.choices.items():   # a few ways each command is used, under its --help
        sub_parser.formatter_class = argparse.RawDescriptionHelpFormatter
        sub_parser.epilog = "examples:\n" + "\n".join(f"  retail-ann {name} {e}".rstrip() for e in EXAMPLES[name])
    return parser


EXAMPLES = {
    "generate": ["--out data/shop --customers 100000 --days 365",
                 "--out s3a://lake/raw --customers 5000 --conf spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9000"],
    "import": ["online-retail --input online_retail.csv.gz --out data/retail",
               "cdnow --input CDNOW_master.txt.gz --out data/cdnow --log-level WARNING"],
    "features": ["--transactions data/shop/transactions --clickstream data/shop/clickstream "
                 "--customers data/shop/customers --as-of 2024-10-01 --out data/features",
                 "--transactions data/cdnow/transactions --as-of 1997-07-01,1997-10-01 --lookback-days 180 "
                 "--horizon-days 90 --out data/cdnow_features",
                 "--transactions exports/tx.csv --as-of 2024-10-01 --set recent_days=14 --output-format delta "
                 "--out data/features_delta"],
    "train": ["--features data/features --out models/2024-10-01",
              "--features data/cdnow_features --holdout-as-of 1997-10-01 --out models/cdnow --json",
              "--features shoppers.csv --label Revenue --categorical OperatingSystems,Browser,Region,TrafficType "
              "--out models/shoppers --set 'hidden_units=[64, 32]'"],
    "score": ["--features data/features --model models/2024-10-01 --out data/predictions",
              "--features data/features --model models/2024-10-01 --out data/predictions --as-of 2024-10-01 "
              "--output-format delta",
              "--features s3a://lake/features --model s3a://lake/models/m1 --out s3a://lake/predictions --json",
              "--features data/features --model models/2024-10-01 --out data/predictions_explained --explain 3"],
    "demo": ["", "--out /tmp/demo --customers 20000 --epochs 20"],
}


def _check_local_paths(args: argparse.Namespace) -> None:
    """An input or model path on this machine's disk that does not exist is bad input, said before
    Spark starts (seconds, not the 20 of a session). A path without a scheme is checked only where
    it surely means this disk: not under spark-submit, no Hadoop configuration, no ``fs.defaultFS``
    among the ``--conf`` settings (on a cluster ``/raw/x`` may be on HDFS)."""
    import os
    from urllib.parse import urlparse

    from retail_ann.io import local_path
    from retail_ann.spark import under_spark_submit

    cluster = (under_spark_submit() or os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")
               or any(pair.startswith("spark.hadoop.fs.defaultFS=") for pair in args.conf))
    for name in (*_TABLE_ARGS, "input", "model"):
        path = getattr(args, name, None)
        if not isinstance(path, str) or not path or any(c in path for c in "*?["):   # a number, or a glob
            continue
        scheme = urlparse(str(path)).scheme
        if (scheme == "file" or (not scheme and not cluster)) and not local_path(path).exists():
            if name == "model":
                raise InputError(f"model directory not found: {path} (train writes it: retail-ann train "
                                 f"--features TABLE --out {path})")
            raise InputError(f"input not found: {path}")


def _unreadable_file(e: BaseException) -> str | None:
    """What to say when Spark failed reading one of the input files (a truncated or corrupt Parquet
    file among good ones is found only when its rows are read): the file and the reader's reason."""
    text = str(e)
    found = re.search(r"\[FAILED_READ_FILE[.\w]*\] Encountered error while reading file (\S+?)\.?\s", text)
    if not found:
        return None
    cause = re.findall(r"Caused by: [\w.$]+(?:Exception|Error): (.+)", text)
    reason = cause[-1].strip() if cause else "unreadable"
    return f"cannot read input file {found.group(1)}: {reason}"


def _run(handler: Callable[[argparse.Namespace], Outcome], args: argparse.Namespace) -> int:
    """Run the command and print its outcome on stdout (the summary, or ``--json`` its manifests).
    Exit 2 for what the user can fix (``InputError``, an unreadable input file), 1 for the rest:
    an ``AnalysisException`` that reaches this far comes from our own code (the user's mistakes are
    turned into ``InputError`` where they are made), and a scheduler should retry or page, not
    blame the input."""
    started = time.perf_counter()
    try:
        _check_local_paths(args)
        outcome = handler(args)
        if args.json:
            print("\n".join(json.dumps(m, default=str, sort_keys=True) for m in outcome.manifests))
        else:
            lines = outcome.lines
            print("\n".join([f"retail-ann {args.command}: {lines[0]} ({time.perf_counter() - started:.1f} s)",
                             *lines[1:]]))
        return EXIT_OK
    except InputError as e:
        log.debug("bad input", exc_info=True)
        print(f"retail-ann {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # the one place that turns any failure into exit 1 and one line
        unreadable = _unreadable_file(e)
        if unreadable:
            log.debug("unreadable input file", exc_info=True)
            print(f"retail-ann {args.command}: error: {unreadable}", file=sys.stderr)
            return EXIT_BAD_INPUT
        log.debug("failure", exc_info=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"retail-ann {args.command}: failed: {type(e).__name__}: {first}", file=sys.stderr)
        return EXIT_FAILURE


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler's timeout or kill): not an ``Exception``, so no handler inside
    the job mistakes it for a failure of its own."""


def _terminate(signum, frame) -> None:
    # The JVM may have the signal too: py4j then logs every broken call with its traceback at INFO
    # on the root logger. Nothing after this point is worth an INFO line.
    logging.getLogger().setLevel(logging.WARNING)
    raise Terminated()


def _stop_spark_quietly() -> None:
    """Stop the session, if any, with Spark's own logging silenced: its tasks die with the job."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    if sc is None:
        return
    try:
        sc.setLogLevel("OFF")
        sc.stop()
    except Exception:  # the JVM may be going down already (it got the signal too)
        log.debug("stopping Spark after SIGTERM", exc_info=True)


def main(argv: Sequence[str] | None = None) -> int:
    use_real_stderr()
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    _resolve_formats(args)
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return _run(args.handler, args)
    except Terminated:
        _stop_spark_quietly()
        print(f"retail-ann {args.command}: stopped by SIGTERM; the outputs it had not published are left as they "
              "were, and the next run repairs what it left", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
