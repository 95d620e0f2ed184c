"""Reading any supported input as a DataFrame: the read side of the storage edge.

An input is a file or a directory of Parquet, CSV (header row, optionally gzipped), JSON lines or a
Delta table, as real tools write them:

- the format comes from ``fmt``, else the file's extension, else the data files of the directory
  (hidden ``_*``/``.*`` files and directories are not data; files of another extension, a stray
  ``README.txt`` say, are left out with a warning; two data formats in one directory are refused);
- CSV files are mapped by each file's own header, so exports whose columns come in another order
  are read by name (Spark maps every file by the first file's header);
- Parquet written by pandas or pyarrow (nanosecond timestamps, their default) is read: the session
  reads TIMESTAMP(NANOS) as longs (``spark.sql.legacy.parquet.nanosAsLong``) and the columns the
  footer marks as such become microsecond timestamps again.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import logging
import os
from collections import defaultdict

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retail_ann import io
from retail_ann.errors import InputError
from retail_ann.schemas import CORRUPT_RECORD

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv", "json", "delta", "text")   # text: one row per line, column ``value``
INPUT_FORMATS = ("auto", "parquet", "csv", "json", "delta")   # what --input-format offers (auto: infer_format)
DATA_EXTENSIONS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv", ".tsv": "csv",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
}
FILE_EXTENSIONS = {**DATA_EXTENSIONS, ".txt": "csv"}   # a file named on its own may be a .txt export
COMPRESSION = (".gz", ".bz2", ".snappy")
_MALFORMED = "__retail_ann_malformed_line"   # where Spark puts malformed JSON lines before the rename


def _split_extension(name: str) -> tuple[str, str]:
    """(data extension, full suffix) of a file name: ``part-0.csv.gz`` -> (``.csv``, ``.csv.gz``)."""
    base = name.lower()
    compression = next((c for c in COMPRESSION if base.endswith(c)), "")
    ext = os.path.splitext(base.removesuffix(compression))[1]
    return ext, ext + compression


def infer_format(spark: SparkSession, path: str, fmt: str | None = None) -> tuple[str, list[str] | None]:
    """(format, the data files to read or None for all of ``path``): ``fmt`` when given (in a
    directory, only its files of that extension when some have it), else from the extension of a
    file, else from the data files of a directory (see the module docstring), else Parquet (Spark's
    own part files, pandas files without an extension)."""
    if fmt and fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt in ("delta", "text"):
        return fmt, None
    ext, _ = _split_extension(str(path).rstrip("/").rsplit("/", 1)[-1])
    if ext in FILE_EXTENSIONS:
        return fmt or FILE_EXTENSIONS[ext], None
    if not fmt and io.path_exists(spark, f"{str(path).rstrip('/')}/_delta_log"):
        return "delta", None
    files = io.data_files(spark, path)
    by_format: dict[str, list[str]] = defaultdict(list)
    for f in files:
        found = DATA_EXTENSIONS.get(_split_extension(f.rsplit("/", 1)[-1])[0], "")
        by_format[found if not fmt or found == fmt else ""].append(f)   # a format given: the rest is stray
    known = sorted(k for k in by_format if k)
    if fmt and not known:
        return fmt, None   # no file says it: every file is taken to be fmt, as Spark would
    if len(known) > 1:
        raise InputError(f"{path} mixes data formats: " + "; ".join(
            f"{k}: {', '.join(n.rsplit('/', 1)[-1] for n in by_format[k][:3])}" for k in known)
            + " (keep one format per directory, or name it with --format)")
    if not known:
        return "parquet", None
    stray = by_format.get("", [])
    if stray:
        log.warning("%s: left out %d file(s) that are not %s data: %s", path, len(stray), known[0],
                    ", ".join(n.rsplit("/", 1)[-1] for n in stray[:5]))
        return known[0], by_format[known[0]]
    return known[0], None


def read_table(spark: SparkSession, path: str, fmt: str | None = None, version: int | None = None) -> DataFrame:
    """Read a table; a missing path, a directory without data files, two data formats in one
    directory or a Parquet type Spark cannot read is an ``InputError``.

    CSV columns arrive as strings (the schema cast in ``schemas.conform`` decides what parses), with
    ``_corrupt_record`` holding the text of a line whose field count differs from its file's header
    (its fields cannot be trusted to line up; validation rejects it as a malformed record); for JSON
    it holds a line that does not parse. An input with a column of that name is refused. Spark only
    checks the count when it parses every column, hence ``spark.sql.csv.parser.columnPruning.enabled``
    false among the session's required settings. ``version``: a Delta table as of that commit.
    """
    if not io.path_exists(spark, path):
        raise InputError(f"input not found: {path}")
    fmt, files = infer_format(spark, path, None if fmt == "auto" else fmt)
    if version is not None and fmt != "delta":
        raise InputError(f"--input-version reads a Delta table; {path} is {fmt}")
    source = files or path
    base = {"basePath": path} if files else {}   # a file list keeps the directory's partition columns
    try:
        if fmt == "csv":
            df = _read_csv(spark, path, files)
        elif fmt == "json":
            # malformed lines go to a column no input names, so a real _corrupt_record key is told apart
            df = (spark.read.options(**base).option("mode", "PERMISSIVE")
                  .option("columnNameOfCorruptRecord", _MALFORMED).json(source))
            _refuse_reserved_column(path, df.columns)
            if _MALFORMED in df.columns:
                df = df.withColumnRenamed(_MALFORMED, CORRUPT_RECORD)
        elif fmt == "parquet":
            sample = files[0] if files else next(iter(io.data_files(spark, path, limit=1)), None)
            df = _nanos_to_timestamps(spark, spark.read.options(**base).parquet(*(files or [path])), sample)
        elif fmt == "delta":
            reader = spark.read.format("delta")
            df = (reader.option("versionAsOf", version) if version is not None else reader).load(path)
        else:
            df = spark.read.format(fmt).load(source)
    except AnalysisException as e:
        raise InputError(_unreadable(path, fmt, e)) from None
    log.info("read %s (%s): %d columns", path, fmt, len(df.columns))
    return df


def _read_csv(spark: SparkSession, path: str, files: list[str] | None) -> DataFrame:
    """CSV with every file mapped by its own header: files are grouped by header, each group read
    with its header as the schema (all strings, plus ``_corrupt_record``), the groups unioned by name."""
    sep = "\t" if _split_extension(str(path).rstrip("/"))[0] == ".tsv" else ","
    reader = spark.read.option("header", True).option("sep", sep).option("mode", "PERMISSIVE")
    names = files or io.data_files(spark, path)
    if names != [path]:
        reader = reader.option("basePath", path)
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for name in names:
        header = _csv_header(spark, name, sep)
        if header is not None:   # an empty file holds no rows
            groups[header].append(name)
    if not groups:
        header = tuple(reader.csv(path).columns)   # Spark's own message for a directory without data
        groups[header] = [path]
    if len(groups) > 1:
        log.warning("%s: %d files order their columns differently; each is read by its own header", path,
                    sum(len(g) for g in list(groups.values())[1:]))
    frames = []
    for header, group in groups.items():
        _refuse_reserved_column(path, list(header))
        schema = T.StructType([T.StructField(c, T.StringType()) for c in header]
                              + [T.StructField(CORRUPT_RECORD, T.StringType())])
        frames.append(reader.schema(schema).csv(group))
    df = frames[0]
    for more in frames[1:]:
        df = df.unionByName(more, allowMissingColumns=True)
    return df


def _csv_header(spark: SparkSession, name: str, sep: str) -> tuple[str, ...] | None:
    """The first line of a CSV file (gzip and bzip2 read through), as column names; None if empty."""
    if io.is_local(name, spark):
        opener = {".gz": gzip.open, ".bz2": bz2.open}.get(os.path.splitext(name)[1].lower(), open)
        with opener(io.local_path(name), "rt", encoding="utf-8", errors="replace", newline="") as f:
            line = f.readline()
    else:
        line = io.read_first_line(spark, name)
    if not line.strip():
        return None
    return tuple(next(csv.reader([line.rstrip("\r\n")], delimiter=sep)))


def _nanos_to_timestamps(spark: SparkSession, df: DataFrame, sample_file: str | None) -> DataFrame:
    """``df`` with the columns the Parquet footer of ``sample_file`` marks TIMESTAMP(NANOS) (read
    as nanoseconds since the epoch) turned into timestamps, to the microsecond."""
    if sample_file is None:
        return df
    nanos = [c for c in io.parquet_nanos_columns(spark, sample_file) if c in df.columns]
    for c in nanos:   # floor to the microsecond in integers: a double cannot hold nanoseconds since 1970
        df = df.withColumn(c, F.timestamp_micros(F.expr(f"div(`{c}` - pmod(`{c}`, 1000), 1000)")))
    if nanos:
        log.info("read nanosecond timestamps as microseconds: %s", ", ".join(nanos))
    return df


def _refuse_reserved_column(path: str, columns: list[str]) -> None:
    if CORRUPT_RECORD in columns:
        raise InputError(f"{path} has a column named {CORRUPT_RECORD}, the name the reader gives "
                         "the text of malformed lines; rename that column")


def _unreadable(path: str, fmt: str, e: AnalysisException) -> str:
    """A clear message for the read errors bad inputs cause; any other error is raised as it is."""
    if e.getCondition() == "UNABLE_TO_INFER_SCHEMA":
        return f"no {fmt} data under {path} (an empty directory, or only hidden _/. files?)"
    raise e
