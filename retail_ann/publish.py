"""Publishing partitions of an output table (features, score) and whole tables (generate, import)
so that a killed job never leaves one half-written.

Spark's dynamic partition overwrite deletes a partition before it moves the new files in, so a kill
in between loses the old partition and strands the new one in ``.spark-staging-*``. Instead, for
the partitions ``values`` of ``OUT`` partitioned by ``col``:

1. a journal ``OUT/_publish/<run>.json`` (state ``writing``, the directories it will replace:
   ``col=<value>`` partitions or table names) is written first;
2. Spark writes the rows under ``OUT/_publish/<run>/`` (``col=<value>/`` directories); on
   ``s3a://`` through the S3A magic committer (multipart uploads completed at job commit, no
   rename), elsewhere through Hadoop's FileOutputCommitter (the manifest's ``committer`` says which);
3. the staged row count is checked, and each staged partition gets its ``_manifest.json`` (with
   the run id) and ``_SUCCESS``: they describe the partition they sit in (a staged table gets a
   ``_manifest.json`` with the run id and its rows);
4. the journal turns ``swapping``; each partition is swapped in: on a local Linux disk by one
   atomic exchange of the two directories (``renameat2(RENAME_EXCHANGE)``), elsewhere by two
   renames (old aside, new in; HDFS renames are atomic, so a reader sees the old partition, for an
   instant none, then the new one, never a mix);
5. the old copies, the staging directory and the journal are removed.

Before step 1 every run recovers what an earlier run left for the same partitions: a ``writing``
journal (killed during Spark's write) is rolled back (its staging removed, the live partitions
untouched), a ``swapping`` one is rolled forward (each partition whose ``_manifest.json`` does not
carry that run's id gets the staged copy). Journals of other partitions are left alone, so runs for
different dates may share ``OUT``. On object stores, where a rename is a copy, use Delta instead
(its log is the atomic publish); there ``_SUCCESS`` and the manifest mark a complete partition.

``STEP_HOOK`` (``None``) is called with each step's name: tests stop the process there.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from retail_ann import io

log = logging.getLogger(__name__)

PUBLISH_DIR = "_publish"
RUN_KEY = "publish_run"
STEP_HOOK: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name)


class _Storage:
    """The few directory operations publishing needs, on a local disk or any Hadoop filesystem."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark = spark
        self.local = io.is_local(root, spark)

    def exists(self, path: str) -> bool:
        return io.path_exists(self.spark, path)

    def list_dirs(self, path: str) -> list[str]:
        return [name for name, is_dir in self._entries(path) if is_dir]

    def list_files(self, path: str, suffix: str) -> list[str]:
        return [name for name, is_dir in self._entries(path) if not is_dir and name.endswith(suffix)]

    def _entries(self, path: str) -> list[tuple[str, bool]]:
        """(name, is a directory) of what ``path`` holds, sorted; nothing when it does not exist."""
        if self.local:
            p = io.local_path(path)
            return sorted((c.name, c.is_dir()) for c in p.iterdir()) if p.is_dir() else []
        fs, hpath = io.hadoop_fs(self.spark, path)
        if not fs.exists(hpath):
            return []
        return sorted((s.getPath().getName(), s.isDirectory()) for s in fs.listStatus(hpath))

    def rename(self, src: str, dst: str) -> None:
        if self.local:
            io.local_path(dst).parent.mkdir(parents=True, exist_ok=True)
            os.rename(io.local_path(src), io.local_path(dst))
            return
        fs, hsrc = io.hadoop_fs(self.spark, src)
        _, hdst = io.hadoop_fs(self.spark, dst)
        fs.mkdirs(hdst.getParent())
        if not fs.rename(hsrc, hdst):
            raise OSError(f"could not rename {src} to {dst}")

    def exchange(self, a: str, b: str) -> bool:
        """Swap two existing directories in one atomic step where the filesystem can (local Linux);
        False where it cannot, and nothing was changed."""
        if not self.local or _RENAMEAT2 is None:
            return False
        rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(io.local_path(a)), _AT_FDCWD, os.fsencode(io.local_path(b)),
                        _RENAME_EXCHANGE)
        return rc == 0

    def delete(self, path: str) -> None:
        if self.local:
            p = io.local_path(path)
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
            return
        fs, hpath = io.hadoop_fs(self.spark, path)
        fs.delete(hpath, True)


def _renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def publish_partitions(
    spark: SparkSession, df: DataFrame, out: str, col: str, values: list[str], expected_rows: int,
    manifest: Callable[[int], dict],
) -> dict:
    """Write ``df`` (partitioned by ``col``, holding exactly the partitions ``values``) into ``out``,
    replacing those partitions as described in the module docstring; each gets ``manifest(rows
    staged)`` plus this run's id, and ``_SUCCESS``. Raises ``RuntimeError`` (nothing published)
    when the staged row count is not ``expected_rows``. Returns the manifest written."""
    def write(staging: str) -> None:
        # a fresh directory, so static overwrite (the S3A committers refuse dynamic partition overwrite)
        df.write.mode("overwrite").option("partitionOverwriteMode", "static").partitionBy(col).parquet(staging)

    return publish_written(spark, write, out, col, values, expected_rows, manifest)


def publish_written(
    spark: SparkSession, write: Callable[[str], str | None], out: str, col: str, values: list[str],
    expected_rows: int, manifest: Callable[[int], dict],
) -> dict:
    """``publish_partitions`` for rows that ``write(staging)`` puts under ``staging`` as Parquet in
    ``col=<value>/`` directories, by any means (Spark's writer, or tasks writing files themselves);
    it returns the name of what committed the files, or None to read it from ``_SUCCESS``."""
    out = str(out).rstrip("/")
    store = _Storage(spark, out)
    entries = sorted({f"{col}={v}" for v in values})
    run, staging, journal = _begin(spark, out, entries)
    committer = write(staging)
    _step("staged")
    staged = sorted(d for d in store.list_dirs(staging) if d.startswith(f"{col}="))
    rows = io.parquet_rows(spark, staging) if staged else 0
    if staged != entries or rows != expected_rows:
        store.delete(staging)
        store.delete(journal)
        raise RuntimeError(f"staged {rows} rows in partitions {[d.split('=', 1)[1] for d in staged]} for "
                           f"{expected_rows} rows in {sorted(str(v) for v in values)}: nothing published")
    written = {**manifest(rows), RUN_KEY: run, "committer": committer or _committer(spark, staging)}
    for entry in entries:
        io.write_manifest(spark, f"{staging}/{entry}", written)
        io.write_success(spark, f"{staging}/{entry}")
    _finish(spark, store, out, run, entries)
    return written


def publish_delta_partitions(
    spark: SparkSession, df: DataFrame, out: str, col: str, values: list[str], expected_rows: int,
    manifest: Callable[[int], dict], metadata: dict,
) -> dict:
    """The Delta counterpart of ``publish_partitions``: replace the partitions ``values`` of the
    Delta table ``out`` (created if new) with ``df`` in one commit (``replaceWhere``: history grows,
    the live rows of other partitions stay; Delta's log is the atomic publish) carrying ``metadata``
    as its ``userMetadata``; then check the live rows of ``values`` are ``expected_rows`` and put
    ``manifest(rows)`` and ``_SUCCESS`` into each partition's directory (Delta leaves files starting
    with ``_`` alone). Returns the manifest written."""
    out = str(out).rstrip("/")
    where = f"`{col}` IN ({', '.join(repr(str(v)) for v in values)})"
    (df.write.format("delta").mode("overwrite").partitionBy(col).option("replaceWhere", where)
     .option("userMetadata", json.dumps(metadata, sort_keys=True, default=str)).save(out))
    rows = spark.read.format("delta").load(out).where(F.col(col).cast("string").isin(*values)).count()
    if rows != expected_rows:
        raise RuntimeError(f"wrote {rows} rows to {out} for {expected_rows}")
    written = manifest(rows)
    for value in values:
        io.write_manifest(spark, f"{out}/{col}={value}", written)
        io.write_success(spark, f"{out}/{col}={value}")
    return written


def publish_tables(spark: SparkSession, tables: dict[str, DataFrame], out: str) -> dict[str, int]:
    """Write each DataFrame of ``tables`` as Parquet to ``out/<name>``, replacing the table there the
    same way partitions are replaced (staged, counted, swapped in behind the journal), so a killed
    ``generate`` or ``import`` leaves the previous tables whole. Returns the rows of each table."""
    out = str(out).rstrip("/")
    store = _Storage(spark, out)
    entries = sorted(tables)
    run, staging, _ = _begin(spark, out, entries)
    rows = {}
    for name in entries:
        tables[name].write.mode("overwrite").parquet(f"{staging}/{name}")
        rows[name] = io.parquet_rows(spark, f"{staging}/{name}")
        io.write_manifest(spark, f"{staging}/{name}", {RUN_KEY: run, "rows": rows[name]})
    _step("staged")
    _finish(spark, store, out, run, entries)
    return rows


def _begin(spark: SparkSession, out: str, entries: list[str]) -> tuple[str, str, str]:
    """Recover what earlier runs left for ``entries`` (directories of ``out``), then open a run:
    (run id, its staging directory, its journal), the journal written in state ``writing``."""
    recover(spark, out, entries)
    run = uuid.uuid4().hex[:12]
    root = f"{out}/{PUBLISH_DIR}"
    _write_journal(spark, f"{root}/{run}.json", {"run": run, "entries": entries, "state": "writing"})
    _step("journal-written")
    return run, f"{root}/{run}", f"{root}/{run}.json"


def _finish(spark: SparkSession, store: "_Storage", out: str, run: str, entries: list[str]) -> None:
    """Mark the run ``swapping``, swap every staged entry in, then remove the staging and the journal."""
    root = f"{out}/{PUBLISH_DIR}"
    _write_journal(spark, f"{root}/{run}.json", {"run": run, "entries": entries, "state": "swapping"})
    _step("swapping")
    _roll_forward(spark, store, out, run, entries)
    _step("swapped")
    store.delete(f"{root}/{run}")
    store.delete(f"{root}/{run}.json")


def recover(spark: SparkSession, out: str, entries: list[str]) -> None:
    """Finish or undo what an interrupted publish left for any of ``entries`` (directories of
    ``out``: ``as_of_date=…`` partitions, or whole tables)."""
    out = str(out).rstrip("/")
    store = _Storage(spark, out)
    root = f"{out}/{PUBLISH_DIR}"
    wanted = set(entries)
    journals = {name.removesuffix(".json") for name in store.list_files(root, ".json")}
    for run in sorted(journals):
        state = json.loads(io.read_text(spark, f"{root}/{run}.json"))
        if not wanted & set(state["entries"]):
            continue   # another date's (or table's) run, perhaps still going
        if state["state"] == "swapping":
            log.warning("finishing the interrupted publish %s of %s in %s", run, ", ".join(state["entries"]), out)
            _roll_forward(spark, store, out, run, state["entries"])
        else:
            log.warning("removing the unfinished write %s of %s in %s (what was published is as it was)",
                        run, ", ".join(state["entries"]), out)
        store.delete(f"{root}/{run}")
        store.delete(f"{root}/{run}.json")
    # staging without a journal (listed again now: a run that started meanwhile wrote its journal first)
    journals = {name.removesuffix(".json") for name in store.list_files(root, ".json")}
    for name in store.list_dirs(root):
        if name not in journals:
            store.delete(f"{root}/{name}")
    for name in store.list_dirs(out):    # what dynamic partition overwrite left behind in earlier versions
        if name.startswith(".spark-staging-"):
            store.delete(f"{out}/{name}")


def _roll_forward(spark: SparkSession, store: "_Storage", out: str, run: str, entries: list[str]) -> None:
    """Swap each staged entry of ``run`` in, unless the live one already is it."""
    for entry in entries:
        live, staged = f"{out}/{entry}", f"{out}/{PUBLISH_DIR}/{run}/{entry}"
        if _run_of(spark, live) == run:
            continue
        if not store.exists(staged):
            raise RuntimeError(f"publish {run}: neither {live} nor its staged copy holds the new rows")
        if store.exists(live):
            if store.exchange(staged, live):   # the staged path now holds the old rows, deleted with it
                continue
            store.rename(live, f"{out}/{PUBLISH_DIR}/{run}/old/{entry}")
            _step("old-aside")
        store.rename(staged, live)


def _committer(spark: SparkSession, staging: str) -> str:
    """Which output committer wrote ``staging``: the S3A committers leave a JSON ``_SUCCESS`` naming
    themselves (``magic`` on S3), Hadoop's FileOutputCommitter an empty one (``file``: rename)."""
    path = f"{staging}/{io.SUCCESS_FILE}"
    try:
        return json.loads(io.read_text(spark, path)).get("committer", "file") if io.path_exists(spark, path) else "file"
    except ValueError:
        return "file"


def _run_of(spark: SparkSession, partition: str) -> str | None:
    path = f"{partition}/{io.MANIFEST_FILE}"
    if not io.path_exists(spark, path):
        return None
    try:
        return json.loads(io.read_text(spark, path)).get(RUN_KEY)
    except ValueError:
        return None


def _write_journal(spark: SparkSession, path: str, state: dict) -> None:
    io.write_text(spark, path, json.dumps(state))
