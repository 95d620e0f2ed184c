"""Reading inputs and writing outputs: the storage edge of every job.

Inputs are a file or a directory of Parquet, CSV (header row, optionally gzipped), JSON lines or a
Delta table; the format comes from the extension or an explicit ``fmt``. Parquet outputs of
features and score are published partition by partition by ``retail_ann.publish`` (a rerun
replaces only its own partitions, atomically); Delta outputs use dynamic partition overwrite,
which Delta's log makes atomic. Each job leaves a JSON manifest beside its partition.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from retail_ann.errors import InputError
from retail_ann.schemas import CORRUPT_RECORD

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv", "json", "delta", "text")   # text: one row per line, column ``value``
_EXTENSIONS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv", ".txt": "csv", ".tsv": "csv",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
}
QUARANTINE_DIR = "_rejected"
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"
_MALFORMED = "__retail_ann_malformed_line"   # where Spark puts malformed JSON lines before the rename


def is_local(path: str, spark: SparkSession | None = None) -> bool:
    """True for ``file:`` URIs, and for scheme-less paths when the default filesystem is local.

    On YARN ``fs.defaultFS`` is usually ``hdfs://…``, where Spark reads ``/raw/x`` from HDFS, so
    the driver's own disk must not be checked or written for it.
    """
    scheme = urlparse(str(path)).scheme
    if scheme:
        return scheme == "file"
    if spark is None:
        return True
    try:
        default_fs = spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"
    except Exception:  # Spark Connect: no JVM handle; its paths resolve on the server as given
        return True
    return default_fs.startswith("file:")


def local_path(path: str) -> Path:
    """A local path or ``file:`` URI as a ``Path``."""
    return Path(urlparse(str(path)).path if str(path).startswith("file:") else str(path))


def hadoop_fs(spark: SparkSession, path: str):
    """(Hadoop ``FileSystem``, Hadoop ``Path``) of ``path`` through the session's JVM."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def path_exists(spark: SparkSession, path: str) -> bool:
    if is_local(path, spark):
        return local_path(path).exists()
    fs, hpath = hadoop_fs(spark, path)
    return fs.exists(hpath)


def infer_format(path: str, fmt: str | None = None) -> str:
    """The input format: ``fmt`` when given, else from the file extension (``.csv.gz`` is csv), else
    from the files inside a local directory, else Parquet."""
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    name = str(path).rstrip("/").lower()
    for suffix in (".gz", ".bz2", ".snappy"):
        name = name.removesuffix(suffix)
    ext = os.path.splitext(name)[1]
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if is_local(path) and local_path(path).is_dir():
        local = local_path(path)
        if (local / "_delta_log").is_dir():
            return "delta"
        for f in sorted(local.rglob("*")):
            if f.is_file() and not f.name.startswith(("_", ".")):
                return infer_format(str(f))
    return "parquet"


def read_table(spark: SparkSession, path: str, fmt: str | None = None) -> DataFrame:
    """Read a table; a missing path, a directory without data files or a Parquet type Spark cannot
    read is an ``InputError``.

    CSV columns arrive as strings (the schema cast in ``schemas.conform`` decides what parses), with
    ``_corrupt_record`` holding the text of a line whose field count differs from the header's (its
    fields cannot be trusted to line up; validation rejects it as a malformed record); for JSON it
    holds a line that does not parse. An input with a column of that name is refused. Spark only
    checks the count when it parses every column, hence ``spark.sql.csv.parser.columnPruning.enabled``
    false among the session's required settings.
    """
    if not path_exists(spark, path):
        raise InputError(f"input not found: {path}")
    fmt = infer_format(path, fmt)
    try:
        if fmt == "csv":
            sep = "\t" if str(path).lower().removesuffix(".gz").endswith(".tsv") else ","
            reader = spark.read.option("header", True).option("sep", sep).option("mode", "PERMISSIVE")
            header = reader.csv(path).columns
            _refuse_reserved_column(path, header)
            df = reader.schema(T.StructType([T.StructField(c, T.StringType()) for c in header]
                                            + [T.StructField(CORRUPT_RECORD, T.StringType())])).csv(path)
        elif fmt == "json":
            # malformed lines go to a column no input names, so a real _corrupt_record key is told apart
            df = spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", _MALFORMED).json(path)
            _refuse_reserved_column(path, df.columns)
            if _MALFORMED in df.columns:
                df = df.withColumnRenamed(_MALFORMED, CORRUPT_RECORD)
        else:
            df = spark.read.format(fmt).load(path)
    except AnalysisException as e:
        raise InputError(_unreadable(path, fmt, e)) from None
    log.info("read %s (%s): %d columns", path, fmt, len(df.columns))
    return df


def _refuse_reserved_column(path: str, columns: list[str]) -> None:
    if CORRUPT_RECORD in columns:
        raise InputError(f"{path} has a column named {CORRUPT_RECORD}, the name the reader gives "
                         "the text of malformed lines; rename that column")


def _unreadable(path: str, fmt: str, e: AnalysisException) -> str:
    """A clear message for the read errors bad inputs cause; any other error is raised as it is."""
    condition = e.getCondition()
    if condition == "UNABLE_TO_INFER_SCHEMA":
        return f"no {fmt} data under {path} (an empty directory, or only hidden _/. files?)"
    if condition == "PARQUET_TYPE_ILLEGAL" and "NANOS" in str(e):
        return (f"{path} holds nanosecond timestamps (Parquet TIMESTAMP(NANOS)), which Spark cannot read; "
                "write microseconds instead, e.g. pandas to_parquet(..., coerce_timestamps='us', "
                "allow_truncated_timestamps=True)")
    raise e


def write_partitioned(df: DataFrame, out: str, partition_col: str, fmt: str = "parquet") -> None:
    """Write ``df`` partitioned by ``partition_col``, replacing only the partitions it contains."""
    writer = df.write.mode("overwrite").partitionBy(partition_col).format(fmt)
    if fmt == "delta":
        writer = writer.option("partitionOverwriteMode", "dynamic")
    writer.save(out)


def write_table(df: DataFrame, out: str, fmt: str = "parquet") -> None:
    """Write ``df`` to ``out``, replacing whatever was there."""
    df.write.mode("overwrite").format(fmt).save(out)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write a small text file to a local path or any Hadoop filesystem (s3a://, hdfs://, ...)."""
    if is_local(path, spark):
        local = local_path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(local)
        return
    fs, hpath = hadoop_fs(spark, path)
    stream = fs.create(hpath, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def write_manifest(spark: SparkSession, directory: str, manifest: dict) -> str:
    """Write ``manifest`` as ``<directory>/_manifest.json`` and return its path."""
    path = f"{str(directory).rstrip('/')}/{MANIFEST_FILE}"
    write_text(spark, path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_text(spark: SparkSession, path: str) -> str:
    """A small text file from a local path or any Hadoop filesystem."""
    if is_local(path, spark):
        return local_path(path).read_text()
    fs, hpath = hadoop_fs(spark, path)
    stream = fs.open(hpath)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8")
    finally:
        stream.close()


def partition_manifests(spark: SparkSession, table: str, partition_col: str) -> dict[str, dict]:
    """The manifests of a partitioned table, by partition value: ``table/<col>=<v>/_manifest.json``,
    or ``table/_manifest.json`` (under its own value) when ``table`` is one partition's directory.
    A table that no job of ours wrote has none: ``{}``."""
    root = str(table).rstrip("/")
    if is_local(root, spark):
        local = local_path(root)
        found = [local / MANIFEST_FILE] if (local / MANIFEST_FILE).is_file() else \
            sorted(local.glob(f"{partition_col}=*/{MANIFEST_FILE}"))
        paths = [str(p) for p in found if p.is_file()]
    else:
        fs, hpath = hadoop_fs(spark, f"{root}/{MANIFEST_FILE}")
        if fs.exists(hpath):
            paths = [f"{root}/{MANIFEST_FILE}"]
        else:
            pattern = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(f"{root}/{partition_col}=*/{MANIFEST_FILE}")
            paths = sorted(str(st.getPath().toString()) for st in (fs.globStatus(pattern) or []))
    manifests = {}
    for path in paths:
        manifest = json.loads(read_text(spark, path))
        manifests[str(manifest.get(partition_col, path))] = manifest
    return manifests


def write_success(spark: SparkSession, directory: str) -> None:
    """Mark a partition complete with ``<directory>/_SUCCESS``. Spark writes no marker under dynamic
    partition overwrite, and a per-date marker is what a scheduler's sensor waits for."""
    write_text(spark, f"{str(directory).rstrip('/')}/{SUCCESS_FILE}", "")


def quarantine_path(out: str, table: str, partition: str) -> str:
    """Where ``write_quarantine`` puts the rejected rows of ``table`` for ``partition``."""
    return f"{str(out).rstrip('/')}/{QUARANTINE_DIR}/{table}/{partition}"


def write_quarantine(spark: SparkSession, rejected: DataFrame, out: str, table: str, partition: str) -> int:
    """Write rejected rows to ``<out>/_rejected/<table>/<partition>`` and return how many there were.

    The directory starts with ``_`` so readers of ``out`` never see it as data. The count is read back
    from the written files (cheap Parquet metadata) instead of computing the rejects twice.
    """
    target = quarantine_path(out, table, partition)
    rejected.write.mode("overwrite").parquet(target)
    count = spark.read.parquet(target).count()
    if count:
        log.warning("quarantined %d %s row(s) to %s", count, table, target)
    return count
