"""Scoring a feature table's Parquet files in Spark tasks that read and write them with pyarrow.

``mapInArrow`` scoring pays Spark's row path twice (Parquet -> JVM rows -> Arrow -> Python, and
back -> JVM -> Parquet) for work whose model part is a small fraction of it. When the input is a
feature table ``features`` wrote (its manifests vouch that each partition is as written: one row per
customer, every id present) on a filesystem every task can open as a path, and the output is
Parquet there too, ``score`` takes this path instead:

1. the driver lists the data files of the partitions to score, counts their rows and blank ids
   from the Parquet footers (``footer_counts``: no Spark query) and cuts them into units (a file,
   or a run of its row groups) so every core has work;
2. Spark runs one task per unit (``parallelize``); a task reads its unit with pyarrow, scores the
   batches with the same ``scoring.score_batches`` the ``mapInArrow`` path uses (spec transform and
   numpy forward pass; the predictions are identical) and writes one Parquet file into the staging
   directory of ``publish.publish_written``, named by unit and task attempt;
3. the driver keeps the files of the attempts Spark reports as succeeded (a retried or speculative
   attempt's file is deleted), and the publish step counts, marks and swaps the partitions in.

Other inputs (Delta, CSV, object stores, Spark Connect, the keras engine) take ``mapInArrow``.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from retail_ann import io
from retail_ann.artifact import Artifact
from retail_ann.explain import ReasonCodes
from retail_ann.schemas import AS_OF_DATE

log = logging.getLogger(__name__)

COMMITTER = "retail-ann file tasks"   # the manifest's ``committer`` for this path
FAIL_ATTEMPT_ENV = "RETAIL_ANN_TEST_FAIL_FIRST_ATTEMPT"   # tests: the first attempt of each task fails after writing


def footer_counts(files: dict[str, list[str]], id_col: str) -> dict[str, int] | None:
    """Rows of each date's ``files`` (dates without rows left out), read from the Parquet footers,
    when the footers also prove that no row has a blank ``id_col`` (null, or spaces only, as Spark's
    ``trim`` sees it): then these are what ``scoring.count_scorable`` would count, with no rejects.
    None when a footer cannot prove it (no statistics, a null, or a smallest id that could be
    blank): Spark counts then."""
    rows: dict[str, int] = {}
    for date, paths in files.items():
        for path in paths:
            meta = pq.read_metadata(path)
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                if group.num_rows and not _no_blank_ids(group, id_col):
                    return None
                rows[date] = rows.get(date, 0) + group.num_rows
    return {date: n for date, n in rows.items() if n}


def _no_blank_ids(group: pq.RowGroupMetaData, id_col: str) -> bool:
    """True when the row group's statistics show no null ``id_col`` and, for text, no id of spaces
    only: every value is at least the smallest, and a string of spaces sorts below any string
    whose first character other than a space is above it."""
    column = next((group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == id_col),
                  None)
    stats = column.statistics if column is not None else None
    if stats is None or not stats.has_null_count or stats.null_count:
        return False
    if column.physical_type != "BYTE_ARRAY":
        return True
    if not stats.has_min_max:
        return False
    smallest = stats.min.decode("utf-8", "replace") if isinstance(stats.min, bytes) else str(stats.min)
    rest = smallest.lstrip(" ")
    return bool(rest) and rest[0] > " "


def units(files: dict[str, list[str]], cores: int) -> list[tuple[str, str, list[int]]]:
    """``(as-of date, file, row groups)`` units of the data ``files`` of each date: a file whole,
    or cut into runs of row groups until there are about two units per core."""
    whole = [(date, path, list(range(pq.ParquetFile(path).num_row_groups))) for date, paths in sorted(files.items())
             for path in paths]
    whole = [u for u in whole if u[2]]   # a file without row groups holds no rows
    target = 2 * max(cores, 1)
    cut = []
    for date, path, groups in whole:
        pieces = min(len(groups), max(1, -(-target // max(len(whole), 1))))
        size = -(-len(groups) // pieces)
        cut += [(date, path, groups[i:i + size]) for i in range(0, len(groups), size)]
    return cut


def score_files(
    spark: SparkSession, artifact: Artifact, files: dict[str, list[str]], id_col: str, batch_rows: int,
    scored_at: dt.datetime, schema: pa.Schema, counts, staging: str, reasons: ReasonCodes | None = None,
    drift: bool = False,
) -> list[tuple[str, int]]:
    """Score every file of ``files`` (``{as-of date: data files}``) into
    ``staging/as_of_date=<date>/``; returns the (file, rows) each succeeded task wrote. Files of
    attempts that did not succeed are removed."""
    from retail_ann.scoring import _ship

    work = units(files, spark.sparkContext.defaultParallelism)
    shipped = _ship(spark, artifact)
    out_schema = pa.schema([f for f in schema if f.name != AS_OF_DATE])   # the date is the directory
    needed = list(dict.fromkeys([id_col, *artifact.spec.input_columns]))
    root = io.local_path(staging)

    def task(index: int, items):
        return [_score_unit(index, unit, shipped, needed, id_col, batch_rows, scored_at, schema, out_schema, counts,
                            root, reasons, drift) for unit in items]

    rdd = spark.sparkContext.parallelize(work, max(len(work), 1))
    committed = rdd.mapPartitionsWithIndex(task).collect()
    keep = {path for path, _ in committed}
    for date in files:
        directory = root / f"{AS_OF_DATE}={date}"
        for stray in directory.glob("*.parquet") if directory.is_dir() else []:
            if str(stray) not in keep:   # an attempt Spark did not take: failed, or the slower speculative one
                stray.unlink()
    log.info("scored %d file units, one task each", len(work))
    return committed


def _score_unit(index: int, unit: tuple[str, str, list[int]], shipped, needed: list[str], id_col: str,
                batch_rows: int, scored_at: dt.datetime, schema: pa.Schema, out_schema: pa.Schema, counts,
                root: Path, reasons: ReasonCodes | None, drift: bool) -> tuple[str, int]:
    """Executor side: score one unit into its own file, named by unit and attempt."""
    from pyspark import TaskContext

    from retail_ann.scoring import score_batches

    date, path, groups = unit
    ctx = TaskContext.get()
    attempt = f"s{ctx.stageId()}-a{ctx.attemptNumber()}-t{ctx.taskAttemptId()}" if ctx else "driver"
    directory = root / f"{AS_OF_DATE}={date}"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"part-{index:05d}-{attempt}.snappy.parquet"
    batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows, row_groups=groups, columns=needed)
    rows = 0
    with pq.ParquetWriter(target, out_schema, compression="snappy") as writer:
        for batch in score_batches(batches, shipped, id_col, dt.date.fromisoformat(date), scored_at, "numpy",
                                   schema, counts, reasons, drift):
            writer.write_batch(batch.drop_columns([AS_OF_DATE]))
            rows += batch.num_rows
    if os.environ.get(FAIL_ATTEMPT_ENV) and ctx is not None and ctx.attemptNumber() == 0:
        raise RuntimeError(f"{FAIL_ATTEMPT_ENV}: failing attempt 0 of task {index} after it wrote {target.name}")
    return str(target), rows
