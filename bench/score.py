"""`retail-ann score` beside its peers on the same rows: CPU-seconds of each whole process tree, outputs checked equal.

    .venv/bin/python bench/score.py                          # 2,000,000 rows, 2 rounds; appends to bench/RESULTS.md
    .venv/bin/python bench/score.py --rows 200000 --rounds 1 --no-append
    .venv/bin/python bench/score.py --features FEATURES --model MODEL_DIR --only score predict_batch_udf
    .venv/bin/python bench/score.py --tiny                   # 20,000 rows, 1 round, nothing appended (CI)

The mlflow scorer needs mlflow-skinny (``pip install mlflow-skinny``; measured with 3.17.2); ``--tiny``
leaves it out when it is not installed.

Inputs: ``--features`` (a table ``retail-ann features`` wrote; its latest ``as_of_date`` partition is
used) and ``--model`` (a directory ``retail-ann train`` wrote), or, without them, a shop the CLI
builds under ``--out`` (generate 5,000 customers x 200 days, features as of 2024-06-01, train 3
epochs; reused when present: delete ``--out`` to rebuild). That partition is replicated to
``--rows`` rows with new customer ids (``<id>-<copy>``, every column kept) into
``OUT/features_<rows>/as_of_date=<date>/``, 8 Parquet files written by Spark, with the original
partition's ``_manifest.json`` (``rows`` set to the new count): a feature table of ours, which
``score`` trusts (no key shuffle; its file-task path).

Scorers, each its own process on ``local[2]``, reading the same files and writing the same prediction
columns to Parquet (the write is part of the work):

- ``score``: ``python -m retail_ann.cli score``, its default path (file tasks for a table of ours);
- ``score-arrow``: the same with ``file_tasks: false`` (``mapInArrow``);
- ``score-explain``: ``score --explain 3``, the default path with three reason codes a row
  (not a peer: what reason codes cost);
- ``score-no-drift``: ``score --set drift=false``, without counting the inputs' training bins
  (what drift counting costs);
- ``passthrough``: Spark reads the input columns, a ``mapInArrow`` returns the prediction schema
  filled with constants, Spark writes it: the floor of Spark's Python path;
- ``predict_batch_udf``: ``pyspark.ml.functions.predict_batch_udf`` whose predict function loads
  the artifact and its Keras models (``scoring.network_runner(artifact, "keras")``: each
  ``.keras`` file through ``keras.saving.load_model(path, compile=False)``, called on the batch),
  ``spec.transform`` of the columns, then ``targets.predictions``;
- ``mlflow``: ``mlflow.pyfunc.spark_udf`` (``env_manager="local"``) of a pyfunc model saved with
  ``mlflow.pyfunc.save_model``, a ``PythonModel`` around the artifact (``artifact.predict``: spec
  transform + numpy forward pass);
- ``plain``: one Python process, no Spark: ``pyarrow.dataset`` reads the files, ``spec.transform``
  and ``artifact.predict_matrix`` (numpy, BLAS on one thread as in ``score``), ``pyarrow.parquet``
  writes one file.

CPU-seconds are those of the scorer's whole process tree (``proctree.run_tree``): what the tree's own
cgroup was charged, which counts Spark's Python workers too (pyspark's daemon lets the kernel reap
them, so ``wait4`` never sees their time: figures before 2026-12-01 session 11 left it out for
every Spark scorer); where no cgroup can be made, the reaped processes' rusage, and the table says
so. This process is also the child subreaper (``prctl``), so the JVM, which outlives the Python
driver that started it, is reaped here and the run ends with its last process. Rounds interleave the scorers; medians are
reported. Then every output is joined with ``score``'s on ``customer_id``: the same ids, one to
one, and ``purchase_probability`` and ``predicted_spend`` bit-identical for the numpy scorers,
for the Keras one within float32 rounding (``TOLERANCE``: purchase_probability 2e-7, predicted_spend
2e-7 + 1e-6 x the value: it is currency). A mismatch exits 1.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import inspect
import json
import os
import platform
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from proctree import Run, RunFailed, become_subreaper, run_tree  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402

from retail_ann.schemas import (  # noqa: E402
    AS_OF_DATE, CUSTOMER_ID, MODEL_VERSION, PREDICTED_SPEND, PURCHASE_PROBABILITY, SCORED_AT, PREDICTED_PURCHASE,
)

RESULTS = ROOT / "bench" / "RESULTS.md"
MASTER = "local[2]"
SCORERS = ("score", "score-arrow", "score-explain", "score-no-drift", "passthrough", "predict_batch_udf", "mlflow",
           "plain")
EXACT = ("score", "score-arrow", "score-explain", "score-no-drift", "mlflow", "plain")   # numpy: bit-identical to score's
EXPLAIN = 3   # reasons a row for score-explain
# the Keras forward pass (predict_batch_udf) against numpy's, |difference| <= absolute + relative x |score's|:
# float32 rounding, a few units in the last place; spend is in currency, so relative past 2e-7 absolute
TOLERANCE = {PURCHASE_PROBABILITY: (2e-7, 0.0), PREDICTED_SPEND: (2e-7, 1e-6)}
CHECKED = tuple(TOLERANCE)
PREDICTED = (PURCHASE_PROBABILITY, PREDICTED_PURCHASE, PREDICTED_SPEND)
FILES = 8                       # data files of the replicated table
TINY_ROWS = 20_000
SHOP = dict(customers=5000, days=200, start="2024-01-01", as_of="2024-06-01", lookback=120, horizon=30, epochs=3)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--features", help="a feature table retail-ann features wrote (default: build one under --out)")
    p.add_argument("--model", help="a model directory retail-ann train wrote (default: train one under --out)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "score"), help="work directory (default %(default)s)")
    p.add_argument("--rows", type=int, default=2_000_000, help="rows scored (default %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every scorer, interleaved (default %(default)s)")
    p.add_argument("--only", nargs="+", choices=SCORERS, help="run these scorers only")
    p.add_argument("--tiny", action="store_true",
                   help=f"{TINY_ROWS:,} rows, 1 round, mlflow only if installed, nothing appended (CI)")
    p.add_argument("--no-append", action="store_true", help="print the tables only")
    args = p.parse_args(argv)
    if (args.features is None) != (args.model is None):
        p.error("give --features and --model together, or neither")
    if args.tiny:
        args.rows, args.rounds, args.no_append = TINY_ROWS, 1, True
    if args.rows < 1 or args.rounds < 1:
        p.error("--rows and --rounds must be positive")
    return args


# ------------------------------------------------------------------------------ processes
def run(cmd: list[str], log: Path) -> Run:
    """Run ``cmd`` to the end of its whole process tree (``proctree.run_tree``); exit 1 when it fails."""
    try:
        return run_tree(cmd, log)
    except RunFailed as e:
        raise SystemExit(f"bench/score.py: {e}") from None


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "retail_ann.cli", *args, "--master", MASTER, "--log-level", "WARNING"]


def worker(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# ------------------------------------------------------------------------------ inputs
def build_shop(out: Path) -> tuple[Path, Path]:
    """(feature table, model directory) of a generated shop under ``out``, each step skipped when its output exists."""
    raw, features, model = out / "raw", out / "features0", out / "model"
    s = {k: str(v) for k, v in SHOP.items()}
    steps = [
        (raw / "_manifest.json", cli("generate", "--out", str(raw), "--customers", s["customers"], "--days", s["days"],
                                     "--start", s["start"])),
        (features / f"{AS_OF_DATE}={s['as_of']}" / "_manifest.json",
         cli("features", "--transactions", str(raw / "transactions"), "--clickstream", str(raw / "clickstream"),
             "--customers", str(raw / "customers"), "--as-of", s["as_of"], "--lookback-days", s["lookback"],
             "--horizon-days", s["horizon"], "--out", str(features))),
        (model / "VERSION", cli("train", "--features", str(features), "--out", str(model), "--epochs", s["epochs"])),
    ]
    for done, cmd in steps:
        if not done.exists():
            print(f"set-up: retail-ann {cmd[3]}", file=sys.stderr)
            run(cmd, out / "logs" / f"setup-{cmd[3]}.log")
    return features, model


def partition_of(table: Path) -> Path:
    """The latest ``as_of_date=`` partition of a feature table."""
    parts = sorted(p for p in table.glob(f"{AS_OF_DATE}=*") if (p / "_manifest.json").is_file())
    if not parts:
        raise SystemExit(f"bench/score.py: {table} has no {AS_OF_DATE}=<date>/ partition with a _manifest.json")
    return parts[-1]


def replicated_table(base: Path, rows: int, out: Path) -> Path:
    """``out/features_<rows>``: ``base``'s latest partition replicated to ``rows`` rows (reused when it is)."""
    partition = partition_of(base)
    table = out / f"features_{rows}"
    target = table / partition.name / "_manifest.json"
    manifest = {**json.loads((partition / "_manifest.json").read_text()), "rows": rows,
                "replicated_from": str(partition.resolve())}
    if target.is_file() and json.loads(target.read_text()) == manifest:
        return table
    shutil.rmtree(table, ignore_errors=True)
    print(f"set-up: replicating {partition} to {rows:,} rows", file=sys.stderr)
    run(worker("_replicate", str(partition), str(rows), str(table / partition.name)), out / "logs" / "replicate.log")
    target.write_text(json.dumps(manifest, indent=2) + "\n")
    return table


def replicate(partition: str, rows: int, target: str) -> None:
    """Worker: the rows of ``partition`` repeated with ids ``<id>-<copy>`` to ``rows`` rows, written by Spark."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = _session("replicate")
    base = spark.read.parquet(partition)
    n = base.count()
    indexed = base.withColumn("_k", F.row_number().over(Window.orderBy(CUSTOMER_ID)) - 1)
    copies = (spark.range(rows).withColumnRenamed("id", "_row").withColumn("_k", F.col("_row") % n)
              .join(F.broadcast(indexed), "_k")
              .withColumn(CUSTOMER_ID, F.concat_ws("-", CUSTOMER_ID, (F.col("_row") / n).cast("long").cast("string"))))
    copies.select(*base.columns).repartition(FILES).write.mode("overwrite").parquet(target)


def config_file(path: Path, job: str, **settings) -> Path:
    """``conf/<job>.yaml`` with ``settings`` over it, written to ``path``."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**yaml.safe_load((ROOT / "conf" / f"{job}.yaml").read_text()), **settings}))
    return path


def save_pyfunc(model_dir: Path, path: Path) -> None:
    """An MLflow pyfunc model at ``path`` wrapping the artifact (a copy of ``model_dir`` among its artifacts)."""
    import mlflow.pyfunc

    class RetailAnn(mlflow.pyfunc.PythonModel):
        """spec.transform + numpy forward pass of the artifact, as ``score``'s numpy engine."""

        def load_context(self, context):
            from retail_ann.artifact import load_artifact

            self.artifact = load_artifact(context.artifacts["model"])

        def predict(self, context, model_input, params=None):
            return self.artifact.predict(model_input)

    shutil.rmtree(path, ignore_errors=True)
    mlflow.pyfunc.save_model(path=str(path), python_model=RetailAnn(), artifacts={"model": str(model_dir)},
                             pip_requirements=[])


# ------------------------------------------------------------------------------ the scorers (workers)
def _session(name: str):
    from retail_ann.logs import configure_logging
    from retail_ann.spark import build_session

    configure_logging("WARNING")
    return build_session(f"bench-score-{name}", master=MASTER)


def _output_schema(artifact):
    """The prediction columns ``score`` writes in a partition's files (its date is the directory)."""
    from pyspark.sql import types as T

    from retail_ann.scoring import prediction_schema

    full = prediction_schema(artifact, T.StructField(CUSTOMER_ID, T.StringType()))
    return T.StructType([f for f in full.fields if f.name != AS_OF_DATE])


def _constant(kind: pa.DataType, n: int) -> pa.Array:
    return pa.repeat(pa.scalar("" if pa.types.is_string(kind) else 0, kind), n)


def passthrough(batches, schema: pa.Schema):
    """Arrow in, the prediction schema out, no compute: the floor any Python scorer in Spark pays."""
    for batch in batches:
        cols = [batch.column(CUSTOMER_ID) if f.name == CUSTOMER_ID else _constant(f.type, batch.num_rows)
                for f in schema]
        yield pa.RecordBatch.from_arrays(cols, schema=schema)


def batch_udf(model_dir: str, names: list[str], return_type, batch_rows: int):
    """``predict_batch_udf`` over the input columns ``names``: the artifact's transform, its Keras networks."""
    from pyspark.ml.functions import predict_batch_udf

    def make_predict_fn():
        import pandas as pd

        from retail_ann.artifact import load_artifact
        from retail_ann.scoring import network_runner

        artifact = load_artifact(model_dir)
        keras_run = network_runner(artifact, "keras")

        def predict(*columns: np.ndarray) -> dict[str, np.ndarray]:
            return artifact.predict_matrix(artifact.spec.transform(pd.DataFrame(dict(zip(names, columns)))), keras_run)

        # one parameter per column: predict_batch_udf hands each column over as its own array
        predict.__signature__ = inspect.Signature(
            [inspect.Parameter(f"c{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(len(names))])
        return predict

    return predict_batch_udf(make_predict_fn, return_type=return_type, batch_size=batch_rows)


def score_in_spark(name: str, features: Path, model_dir: Path, out: Path, mlflow_model: Path | None,
                   batch_rows: int) -> None:
    """Worker: one of the Spark peers, from the partition's files to ``out/<partition>/``."""
    from functools import partial

    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    from retail_ann.artifact import load_artifact

    spark = _session(name)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    artifact = load_artifact(model_dir)
    partition = partition_of(features)
    names = list(artifact.spec.input_columns)
    df = spark.read.parquet(str(partition)).select(CUSTOMER_ID, *names)
    schema = _output_schema(artifact)
    if name == "passthrough":
        scored = df.mapInArrow(partial(passthrough, schema=to_arrow_schema(schema)), schema)
    else:
        # what a pandas UDF returns is nullable
        predicted = T.StructType([T.StructField(f.name, f.dataType) for f in schema.fields if f.name in PREDICTED])
        if name == "predict_batch_udf":
            udf = batch_udf(str(model_dir), names, predicted, batch_rows)
            column = udf(*names)
        else:
            import mlflow.pyfunc

            udf = mlflow.pyfunc.spark_udf(spark, model_uri=str(mlflow_model), result_type=predicted,
                                          env_manager="local")
            column = udf(F.struct(*names))   # a struct arrives as one pandas DataFrame, columns named
        kept = {CUSTOMER_ID: F.col(CUSTOMER_ID), MODEL_VERSION: F.lit(artifact.version),
                SCORED_AT: F.lit(dt.datetime.now(dt.timezone.utc))}
        scored = df.select(CUSTOMER_ID, column.alias("_p")).select(
            *[kept.get(f.name, F.col(f"_p.{f.name}")).alias(f.name) for f in schema.fields])
    scored.write.mode("overwrite").parquet(str(out / partition.name))


def score_plain(features: Path, model_dir: Path, out: Path, batch_rows: int) -> None:
    """Worker: pyarrow + numpy in this one process, no Spark: the same ``scoring.score_batches`` the
    Spark tasks of ``score`` run, over the partition's files."""
    import pyarrow.parquet as pq
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    from retail_ann.artifact import load_artifact
    from retail_ann.scoring import prediction_schema, score_batches

    artifact = load_artifact(model_dir)
    partition = partition_of(features)
    with_date = to_arrow_schema(prediction_schema(artifact, T.StructField(CUSTOMER_ID, T.StringType())))
    as_of = dt.date.fromisoformat(partition.name.split("=", 1)[1])
    batches = ds.dataset(partition, format="parquet").to_batches(
        columns=[CUSTOMER_ID, *artifact.spec.input_columns], batch_size=batch_rows)
    (out / partition.name).mkdir(parents=True)
    with pq.ParquetWriter(out / partition.name / "part-00000.parquet", to_arrow_schema(_output_schema(artifact)),
                          compression="snappy") as writer:
        for batch in score_batches(batches, artifact, CUSTOMER_ID, as_of, dt.datetime.now(dt.timezone.utc), "numpy",
                                   with_date):
            writer.write_batch(batch.drop_columns([AS_OF_DATE]))


def scorer_command(name: str, table: Path, model: Path, out: Path, work: Path) -> list[str]:
    """The command line of scorer ``name`` from ``table`` to ``out``."""
    if name == "score":
        return cli("score", "--features", str(table), "--model", str(model), "--out", str(out))
    if name == "score-no-drift":
        return cli("score", "--features", str(table), "--model", str(model), "--out", str(out), "--set", "drift=false")
    if name == "score-explain":
        return cli("score", "--features", str(table), "--model", str(model), "--out", str(out),
                   "--explain", str(EXPLAIN))
    if name == "score-arrow":
        return cli("score", "--features", str(table), "--model", str(model), "--out", str(out),
                   "--config", str(work / "score_arrow.yaml"))
    return worker("_scorer", name, str(table), str(model), str(out),
                  *(["--mlflow-model", str(work / "mlflow_model")] if name == "mlflow" else []))


def worker_main(argv: list[str]) -> int:
    """``_replicate PARTITION ROWS TARGET`` or ``_scorer NAME FEATURES MODEL OUT [--mlflow-model P]``."""
    if argv[0] == "_replicate":
        replicate(argv[1], int(argv[2]), argv[3])
        return 0
    p = argparse.ArgumentParser(prog="bench/score.py _scorer", allow_abbrev=False)
    p.add_argument("name", choices=[s for s in SCORERS if not s.startswith("score")])
    p.add_argument("features", type=Path)
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--mlflow-model", type=Path)
    args = p.parse_args(argv[1:])
    batch_rows = _batch_rows()
    if args.name == "plain":
        score_plain(args.features, args.model, args.out, batch_rows)
    else:
        score_in_spark(args.name, args.features, args.model, args.out, args.mlflow_model, batch_rows)
    return 0


def _batch_rows() -> int:
    """``score``'s rows per batch (``conf/score.yaml``), which every peer uses too."""
    from retail_ann.config import ScoreConfig, default_config_path, load_config

    return load_config(ScoreConfig, default_config_path("score")).batch_rows


# ------------------------------------------------------------------------------ checks
@dataclass
class Check:
    ok: bool
    text: str


def read_predictions(out: Path, partition: str) -> pa.Table:
    """The ids and checked columns of one scorer's partition, sorted by id."""
    table = ds.dataset(out / partition, format="parquet").to_table(columns=[CUSTOMER_ID, *CHECKED])
    return table.take(pc.sort_indices(table, [(CUSTOMER_ID, "ascending")]))


def compare(ref_name: str, ref: pa.Table, name: str, got: pa.Table) -> Check:
    """``got`` against the reference: the same ids one to one, then the values (not for the passthrough)."""
    if got.num_rows != ref.num_rows:
        return Check(False, f"{got.num_rows:,} rows, {ref_name} {ref.num_rows:,}")
    if not got[CUSTOMER_ID].equals(ref[CUSTOMER_ID]):
        return Check(False, f"ids differ from {ref_name}'s")
    if "passthrough" in (name, ref_name):
        return Check(True, f"same ids as {ref_name} (values are constants)")
    a = {c: ref[c].to_numpy() for c in CHECKED}
    b = {c: got[c].to_numpy() for c in CHECKED}
    diff = {c: np.abs(a[c] - b[c]) for c in CHECKED}
    worst = ", ".join(f"{c} {float(diff[c].max(initial=0.0)):.1e}" for c in CHECKED)
    if name in EXACT and ref_name in EXACT:
        same = all(np.array_equal(a[c].view(np.uint64), b[c].view(np.uint64)) for c in CHECKED)
        return Check(same, f"bit-identical to {ref_name}" if same else f"differs from {ref_name}: max abs diff {worst}")
    within = all(np.all(diff[c] <= atol + rtol * np.abs(a[c])) for c, (atol, rtol) in TOLERANCE.items())
    return Check(within, f"max abs diff vs {ref_name}: {worst}, {'within' if within else 'BEYOND'} the tolerance")


def check_outputs(names: list[str], predictions: Path, partition: str, rows: int) -> dict[str, Check]:
    """Every output against ``score``'s (else the first numpy scorer's, else the first one's)."""
    ref_name = next((n for n in names if n in EXACT), names[0])
    ref = read_predictions(predictions / ref_name, partition)
    distinct = pc.count_distinct(ref[CUSTOMER_ID]).as_py()
    checks = {ref_name: Check(ref.num_rows == rows == distinct, "reference" if ref.num_rows == rows == distinct else
                              f"{ref.num_rows:,} rows and {distinct:,} distinct ids for {rows:,} input rows")}
    for name in names:
        if name != ref_name:
            checks[name] = compare(ref_name, ref, name, read_predictions(predictions / name, partition))
    return checks


# ------------------------------------------------------------------------------ report
def version_of(*dists: str) -> str:
    for dist in dists:
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def facts(table: Path, model: Path, rounds: int, load_start: tuple[float, ...], cpu_source: str) -> list[tuple[str, str]]:
    from retail_ann.artifact import load_artifact

    partition = partition_of(table)
    artifact = load_artifact(model)
    rows = json.loads((partition / "_manifest.json").read_text())["rows"]
    files = [f for f in partition.iterdir() if f.suffix == ".parquet"]
    loads = ", ".join(f"{x:.2f}" for x in load_start), ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("date", dt.date.today().isoformat()),
        ("machine", f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"),
        ("load (1, 5, 15 min) at start; at end", f"{loads[0]}; {loads[1]}"),
        ("versions", ", ".join(version_of(d) for d in ("pyspark", "numpy", "pyarrow", "keras"))
         + ", " + version_of("mlflow", "mlflow-skinny")),
        ("rows", f"{rows:,} ({partition.name}), {len(files)} Parquet files, "
                 f"{sum(f.stat().st_size for f in files) / 1e6:.0f} MB"),
        ("model", f"{artifact.version}: {len(artifact.spec.input_columns)} input columns, "
                  f"{artifact.spec.n_features} model inputs, networks {', '.join(sorted(artifact.weights))}"),
        ("runs", f"{rounds} round(s), scorers interleaved, {MASTER}, {_batch_rows():,} rows per batch; medians"),
        ("CPU-seconds from", cpu_source),
    ]


def _cpu_source(runs: dict[str, list[Run]]) -> str:
    sources = {r.cpu_source for rs in runs.values() for r in rs}
    return ("each tree's own cgroup (Spark's Python workers included)" if sources == {"cgroup"} else
            "wait4 of the reaped processes (Spark's Python workers, reaped by the kernel, are missing)")


def score_path(predictions: Path, partition: str, names: list[str]) -> list[tuple[str, str]]:
    """What the score manifests say about the path taken (``committer``) and the key check (``keys``)."""
    found = []
    for name in (n for n in names if n.startswith("score")):
        manifest = json.loads((predictions / name / partition / "_manifest.json").read_text())
        found.append((f"{name} path", f"committer {manifest.get('committer')!r}, keys {manifest.get('keys')!r}"))
    return found


def report(names: list[str], runs: dict[str, list[Run]], checks: dict[str, Check], rows: int,
           rows_facts: list[tuple[str, str]]) -> str:
    lines = ["| fact | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows_facts], "",
             "| scorer | CPU-s | CPU-s by round | wall s | rows per CPU-s | score's rows per CPU-s ÷ this one's "
             "| load before → after | check |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    cpu = {n: statistics.median(r.cpu_s for r in runs[n]) for n in names}
    for n in names:
        ratio = f"{cpu[n] / cpu['score']:.2f}" if "score" in cpu else "–"
        load = (f"{statistics.median(r.load_before for r in runs[n]):.2f} → "
                f"{statistics.median(r.load_after for r in runs[n]):.2f}")
        lines.append(f"| {n} | {cpu[n]:.1f} | {', '.join(f'{r.cpu_s:.1f}' for r in runs[n])} | "
                     f"{statistics.median(r.wall_s for r in runs[n]):.1f} | {rows / cpu[n]:,.0f} | {ratio} | {load} | "
                     f"{checks[n].text} |")
    if any(n not in EXACT + ("passthrough",) for n in names):
        lines += ["", "Tolerance of the Keras forward pass against numpy's (float32 rounding): "
                      + ", ".join(f"{c} {atol:g}" + (f" + {rtol:g} x the value" if rtol else "")
                                  for c, (atol, rtol) in TOLERANCE.items()) + "."]
    if {"score", "predict_batch_udf"} <= set(cpu):
        ratio = cpu["predict_batch_udf"] / cpu["score"]
        lines += ["", f"score ÷ predict_batch_udf in rows per CPU-second: **{ratio:.2f}** (goal ≥ 3: "
                      f"{'met' if ratio >= 3 else 'not met'})."]
    if {"score", "score-explain"} <= set(cpu):
        ratio = cpu["score-explain"] / cpu["score"]
        lines += ["", f"score --explain {EXPLAIN} ÷ score in CPU-seconds: **{ratio:.2f}** (goal ≤ 1.5: "
                      f"{'met' if ratio <= 1.5 else 'not met'})."]
    if {"score", "score-no-drift"} <= set(cpu):
        lines += ["", f"score (drift counted, the default) ÷ score --set drift=false in CPU-seconds: "
                      f"**{cpu['score'] / cpu['score-no-drift']:.2f}**."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_replicate", "_scorer"):
        return worker_main(argv)
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")   # no usage reports from here or the scorers
    names = [s for s in SCORERS if s in (args.only or SCORERS)]
    if "mlflow" in names and importlib.util.find_spec("mlflow") is None:
        if not args.tiny:
            print("bench/score.py: error: the mlflow scorer needs mlflow-skinny (pip install mlflow-skinny); "
                  "or leave it out with --only", file=sys.stderr)
            return 2
        names.remove("mlflow")
        print("bench/score.py: mlflow is not installed: its scorer is left out", file=sys.stderr)
    try:
        become_subreaper()
    except RunFailed as e:
        raise SystemExit(f"bench/score.py: {e}") from None
    load_start = os.getloadavg()
    out = Path(args.out).resolve()
    base, model = (Path(args.features).resolve(), Path(args.model).resolve()) if args.features else build_shop(out)
    table = replicated_table(base, args.rows, out)
    partition = partition_of(table).name
    if "score-arrow" in names:   # score's mapInArrow path
        config_file(out / "score_arrow.yaml", "score", file_tasks=False)
    if "mlflow" in names:
        save_pyfunc(model, out / "mlflow_model")
    predictions = out / "predictions"
    runs: dict[str, list[Run]] = {n: [] for n in names}
    for r in range(1, args.rounds + 1):
        for name in names:
            shutil.rmtree(predictions / name, ignore_errors=True)
            runs[name].append(run(scorer_command(name, table, model, predictions / name, out),
                                  out / "logs" / f"{name}-{r}.log"))
            print(f"round {r} {name}: {runs[name][-1].cpu_s:.1f} CPU-s, {runs[name][-1].wall_s:.1f} s", file=sys.stderr)
    checks = check_outputs(names, predictions, partition, args.rows)
    header = (f"### bench/score.py ({dt.date.today()})\n\n`{' '.join(['bench/score.py', *argv])}`: each scorer "
              "its own process, CPU-seconds of its whole process tree (JVM and Python workers included).\n")
    text = report(names, runs, checks, args.rows,
                  facts(table, model, args.rounds, load_start, _cpu_source(runs)) + score_path(predictions, partition, names))
    print(header + "\n" + text)
    failed = [n for n in names if not checks[n].ok]
    if failed:
        print(f"bench/score.py: outputs do not match: {', '.join(failed)}", file=sys.stderr)
        return 1
    if not args.no_append:
        with RESULTS.open("a") as f:
            f.write("\n" + header + "\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
