"""Scoring throughput on local Spark: the numpy-engine scorer vs. an Arrow passthrough.

Builds a feature table of ``--rows`` rows by replicating a real feature table (new ids), then
times, alternately and ``--repeats`` times each, over the same input columns and to Spark's
``noop`` sink:

* passthrough: ``mapInArrow`` that returns the prediction schema filled with constants (Arrow in
  and out of Python, no preprocessing, no model);
* numpy: ``scoring.score_dataframe`` (spec transform + numpy forward pass);
* keras (optional, ``--keras``): the same through the Keras models called directly.

Prints medians and the throughput ratio scorer / passthrough (goal >= 0.8).

    .venv/bin/python bench/score_throughput.py --features FEATURES --model MODEL_DIR --rows 2000000
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import numpy as np
import pyarrow as pa
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema

from retail_ann.logs import configure_logging
from retail_ann.schemas import AS_OF_DATE, CUSTOMER_ID
from retail_ann.scoring import score_dataframe
from retail_ann.spark import build_session
from retail_ann.artifact import load_artifact


def passthrough(batches, schema: pa.Schema, id_col: str):
    """Arrow in, the prediction schema out, no compute: the floor any Python scorer pays."""
    for batch in batches:
        n = batch.num_rows
        cols = [batch.column(id_col) if f.name == id_col else _constant(f.type, n) for f in schema]
        yield pa.RecordBatch.from_arrays(cols, schema=schema)


def _constant(kind: pa.DataType, n: int) -> pa.Array:
    if pa.types.is_string(kind):
        return pa.array([""] * n, kind)
    if pa.types.is_date32(kind):
        return pa.array(np.zeros(n, np.int32)).cast(kind)
    return pa.array(np.zeros(n, np.int64)).cast(kind)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--work", default="bench/out/score_input")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--keras", action="store_true")
    args = ap.parse_args()
    configure_logging("WARNING")
    spark = build_session("bench-score-throughput", master=args.master)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch_rows))
    artifact = load_artifact(args.model)
    base = spark.read.parquet(args.features)
    n_base = base.count()
    copies = -(-args.rows // n_base)
    big = (base.crossJoin(spark.range(copies).withColumnRenamed("id", "_copy"))
           .withColumn(CUSTOMER_ID, F.concat_ws("-", CUSTOMER_ID, F.col("_copy").cast("string")))
           .drop("_copy").limit(args.rows))
    big.repartition(2).write.mode("overwrite").parquet(args.work)
    df = spark.read.parquet(args.work).select(CUSTOMER_ID, AS_OF_DATE, *artifact.spec.input_columns)
    rows = df.count()
    scored = score_dataframe(spark, df, artifact)
    schema = scored.schema
    plain = df.mapInArrow(partial(passthrough, schema=to_arrow_schema(schema), id_col=CUSTOMER_ID), schema)
    runs = {"passthrough": plain, "numpy": scored}
    if args.keras:
        runs["keras"] = score_dataframe(spark, df, artifact, engine="keras")
    times: dict[str, list[float]] = {k: [] for k in runs}
    for k, d in runs.items():  # warm-up: JVM, Python workers, broadcast
        d.limit(1000).write.format("noop").mode("overwrite").save()
    for _ in range(args.repeats):
        for k, d in runs.items():
            t = time.perf_counter()
            d.write.format("noop").mode("overwrite").save()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "rows": rows, "features_in": len(artifact.spec.input_columns), "model_inputs": artifact.spec.n_features,
        "batch_rows": args.batch_rows, "master": args.master,
        "median_s": {k: round(v, 2) for k, v in med.items()},
        "rows_per_s": {k: round(rows / v) for k, v in med.items()},
        "throughput_ratio_vs_passthrough": {k: round(med["passthrough"] / v, 3) for k, v in med.items() if k != "passthrough"},
        "all_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
