"""The storage edge of every job, on a local disk or any Hadoop filesystem (hdfs://, s3a://):
paths and listings, small text files, model directories copied across, manifests, ``_SUCCESS``
markers and quarantine. Reading tables is ``retail_ann.inputs``; publishing partitions and tables
(Parquet atomically, Delta in one commit) is ``retail_ann.publish``.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession


log = logging.getLogger(__name__)

QUARANTINE_DIR = "_rejected"
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"


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


def absolute(path: str, spark: SparkSession | None = None) -> str:
    """``path`` as an absolute path (a local one resolved), for manifests read elsewhere."""
    return str(local_path(path).resolve()) if is_local(path, spark) else str(path)


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


def data_files(spark: SparkSession | None, path: str, limit: int | None = None) -> list[str]:
    """The files of ``path`` (itself, for a file) that may hold data, sorted: none below a hidden
    ``_``/``.`` directory, none named so (``_SUCCESS``, ``_delta_log``, ``.crc`` files, quarantine)."""
    root = str(path).rstrip("/")
    found: list[str] = []
    if spark is None or is_local(root, spark):
        local = local_path(root)
        if local.is_file():
            return [root]
        for d, dirs, files in os.walk(local):
            dirs[:] = sorted(x for x in dirs if not x.startswith(("_", ".")))
            found += [os.path.join(d, f) for f in sorted(files) if not f.startswith(("_", "."))]
            if limit and len(found) >= limit:
                break
        return sorted(found)[:limit] if limit else sorted(found)
    fs, hpath = hadoop_fs(spark, root)
    if fs.isFile(hpath):
        return [root]
    prefix = hpath.toString().rstrip("/") + "/"
    files = fs.listFiles(hpath, True)
    while files.hasNext():
        name = files.next().getPath().toString()
        if not any(part.startswith(("_", ".")) for part in name.removeprefix(prefix).split("/")):
            found.append(name)
            if limit and len(found) >= limit:
                break
    return sorted(found)


def read_first_line(spark: SparkSession, path: str) -> str:
    """The first line of a file on any Hadoop filesystem, decompressed by its extension's codec."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    fs, hpath = hadoop_fs(spark, path)
    stream = fs.open(hpath)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(hpath)
    if codec is not None:
        stream = codec.createInputStream(stream)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
    try:
        return reader.readLine() or ""
    finally:
        reader.close()


def parquet_nanos_columns(spark: SparkSession, path: str) -> list[str]:
    """Top-level columns of a Parquet file whose footer says TIMESTAMP(NANOS) (pandas' and pyarrow's
    default); read through Parquet's own footer reader, so any Hadoop filesystem works. ``[]``
    without a JVM (Spark Connect)."""
    try:
        jvm = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
    except Exception:  # Spark Connect
        return []
    _, hpath = hadoop_fs(spark, path)
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(
        jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(hpath, conf))
    try:
        schema = reader.getFooter().getFileMetaData().getSchema()
    finally:
        reader.close()
    return [f.getName() for f in schema.getFields()
            if f.isPrimitive() and "TIMESTAMP(NANOS" in str(f.getLogicalTypeAnnotation())]


def upload_dir(spark: SparkSession, local: Path, target: str, last: str) -> None:
    """Copy the files of the local directory ``local`` to ``target`` on any Hadoop filesystem,
    replacing what was there: the old ``last`` file first goes, and the new one is written last,
    so a reader that checks for it never takes a half-copied directory (object stores cannot
    rename a directory atomically). Files of the old directory the new one lacks are removed."""
    jvm = spark.sparkContext._jvm
    fs, root = hadoop_fs(spark, target)
    fs.delete(jvm.org.apache.hadoop.fs.Path(root, last), False)
    fs.mkdirs(root)
    names = sorted(p.name for p in local.iterdir() if p.is_file())
    # model files are small: each through a stream (S3A's copyFromLocalFile fails on a single file)
    for name in sorted(names, key=lambda n: n == last):
        stream = fs.create(jvm.org.apache.hadoop.fs.Path(root, name), True)
        try:
            stream.write(bytearray((local / name).read_bytes()))
        finally:
            stream.close()
    for status in fs.listStatus(root):
        if status.getPath().getName() not in names:
            fs.delete(status.getPath(), True)


def download_dir(spark: SparkSession, source: str, local: Path) -> None:
    """Copy the files of ``source`` (any Hadoop filesystem) into the local directory ``local``."""
    jvm = spark.sparkContext._jvm
    fs, root = hadoop_fs(spark, source)
    if not fs.exists(root):
        raise FileNotFoundError(source)
    local.mkdir(parents=True, exist_ok=True)
    for status in fs.listStatus(root):
        if status.isFile():
            fs.copyToLocalFile(False, status.getPath(), jvm.org.apache.hadoop.fs.Path(str(local / status.getPath().getName())),
                               True)


def is_inside(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or lies below it (local paths resolved, URIs compared as text)."""
    if is_local(path) and is_local(directory):
        p, d = local_path(path).resolve(), local_path(directory).resolve()
        return d.is_dir() and (p == d or d in p.parents)
    p, d = str(path).rstrip("/"), str(directory).rstrip("/")
    return p == d or p.startswith(d + "/")


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


def parquet_rows(spark: SparkSession, path: str) -> int:
    """The rows of the Parquet table at ``path``, from its files' footers (no data read): with
    pyarrow on a local path, else through Spark."""
    if is_local(path, spark):
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(f).num_rows for f in data_files(spark, path))
    return spark.read.parquet(path).count()


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


def write_quarantine(spark: SparkSession, rejected: DataFrame, out: str, table: str, partition: str,
                     rows: int | None = None) -> int:
    """Write rejected rows to ``<out>/_rejected/<table>/<partition>`` and return how many there were.

    The directory starts with ``_`` so readers of ``out`` never see it as data. ``rows``, when the
    caller already counted them: none means nothing to write (an earlier run's rejects there are
    replaced by an empty set), and the count is not read back. Otherwise it is read back from the
    written files (cheap Parquet metadata) instead of computing the rejects twice.
    """
    target = quarantine_path(out, table, partition)
    if rows == 0 and not path_exists(spark, target):
        return 0
    rejected.write.mode("overwrite").parquet(target)
    count = rows if rows is not None else spark.read.parquet(target).count()
    if count:
        log.warning("quarantined %d %s row(s) to %s", count, table, target)
    return count
