"""The one SparkSession factory, used by jobs, tests and notebooks alike.

Under ``spark-submit`` the master and defaults come from the submit command (``--master``,
``--properties-file``); run directly (``retail-ann ...`` or tests) the factory applies
``conf/spark-defaults.conf`` itself. Either way the settings the pipeline's correctness depends on
(UTC session time zone, CSV field counts checked, Parquet timestamps as microseconds) are forced.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

SPARK_DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "conf" / "spark-defaults.conf"
LOG4J_FILE = SPARK_DEFAULTS_FILE.with_name("log4j2.properties")   # Spark's own log: WARN, on stderr

# Settings the pipeline is wrong without: dates are cut in UTC, and a CSV line with more or fewer
# fields than the header is flagged (Spark checks the field count only when it parses every column;
# with pruning, extra fields vanish silently).
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.csv.parser.columnPruning.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # pandas/pyarrow Parquet holds TIMESTAMP(NANOS), which Spark refuses: read as longs, and
    # inputs.read_table makes them timestamps again from the footer
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    # our own timestamps as Parquet's standard INT64 microseconds, not Spark's legacy INT96
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}

# Settings particular to one job, under the defaults file and the user's --conf (either replaces
# them). score's JVM does no per-row work on its default path (Spark tasks hand whole files to
# Python, which reads, scores and writes them), so the C2 compiler's work is pure cost there: with
# the C1 compiler only, score took 17.0 CPU-s for 2M rows instead of 22.5 (bench/RESULTS.md,
# session 12). It only counts where the JVM starts here (local runs, not under spark-submit).
JOB_DEFAULTS = {
    "score": {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"},
}

# Delta Lake for pyspark 4.0.x, resolved from Maven Central at session start when a job writes Delta.
# (spark-submit.sh reads DELTA_PACKAGE, S3A_PACKAGE and S3A_EXCLUDES from this file: keep them one line each.)
DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.0"
DELTA_CONF = {
    "spark.jars.packages": DELTA_PACKAGE,
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


# S3A for s3a:// paths: hadoop-aws matching the Hadoop 3.4.1 client pyspark 4.0.1 ships, and Spark's
# cloud module for the S3A magic committer (Parquet reaches S3 as multipart uploads completed at job
# commit, no rename). The cloud module pins the AWS SDK v2 bundle Spark 4.0.1 was tested with
# (2.25.53; hadoop-aws alone brings 2.24.6; both predate 2.30, whose default checksums break
# S3-compatible stores). Its Azure, GCS and Hadoop-client dependencies are left out: S3 needs none,
# pyspark ships the client, and hadoop-cloud-storage 3.4.1 is not on Maven Central.
S3A_PACKAGE = "org.apache.hadoop:hadoop-aws:3.4.1,org.apache.spark:spark-hadoop-cloud_2.13:4.0.1"
S3A_EXCLUDES = "org.apache.hadoop:hadoop-cloud-storage,org.apache.hadoop:hadoop-azure,com.google.cloud.bigdataoss:gcs-connector,org.apache.hadoop:hadoop-client-api,org.apache.hadoop:hadoop-client-runtime,org.eclipse.jetty:jetty-util,org.eclipse.jetty:jetty-util-ajax,com.squareup.okhttp3:okhttp,com.squareup.okio:okio,joda-time:joda-time,com.fasterxml.jackson.core:jackson-databind,com.fasterxml.jackson.core:jackson-annotations,com.fasterxml.jackson.dataformat:jackson-dataformat-cbor,org.apache.httpcomponents:httpclient,org.apache.httpcomponents:httpcore"
S3A_COMMITTER = "magic"
S3A_CONF = {
    "spark.hadoop.fs.s3a.committer.name": S3A_COMMITTER,
    "spark.hadoop.mapreduce.outputcommitter.factory.scheme.s3a": "org.apache.hadoop.fs.s3a.commit.S3ACommitterFactory",
    "spark.sql.sources.commitProtocolClass": "org.apache.spark.internal.io.cloud.PathOutputCommitProtocol",
    "spark.sql.parquet.output.committer.class": "org.apache.spark.internal.io.cloud.BindingParquetOutputCommitter",
}


def session_conf(paths: list[str | None], delta: bool, user: dict[str, str]) -> dict[str, str]:
    """Spark settings for a job touching ``paths``: Delta's when ``delta``, S3A's and its magic
    committer when a path is ``s3a://``, then the user's ``--conf`` (their ``spark.jars.packages``
    and ``spark.jars.excludes`` add to ours)."""
    conf = dict(DELTA_CONF) if delta else {}
    jars = {"spark.jars.packages": [p for p in conf.get("spark.jars.packages", "").split(",") if p],
            "spark.jars.excludes": []}
    if any(str(p).startswith("s3a://") for p in paths if p):
        conf.update(S3A_CONF)
        jars["spark.jars.packages"] += S3A_PACKAGE.split(",")
        jars["spark.jars.excludes"] += S3A_EXCLUDES.split(",")
    conf.update(user)
    for key, values in jars.items():
        values += [v for v in user.get(key, "").split(",") if v]
        if values:
            conf[key] = ",".join(dict.fromkeys(values))
    return conf


def ensure_java_home() -> None:
    """Set JAVA_HOME from the ``java`` on PATH when it is unset."""
    if os.environ.get("JAVA_HOME"):
        return
    java = shutil.which("java")
    if java:
        os.environ["JAVA_HOME"] = str(Path(java).resolve().parent.parent)


def read_spark_defaults(path: Path = SPARK_DEFAULTS_FILE) -> dict[str, str]:
    """Parse a spark-defaults.conf file (``key value`` lines, ``#`` comments)."""
    if not path.exists():
        return {}
    conf = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


def under_spark_submit() -> bool:
    """True when this Python process was started by ``spark-submit`` (it then owns master and conf)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(app_name: str, master: str | None = None, conf: dict[str, str] | None = None,
                  job: str | None = None) -> SparkSession:
    """Create (or get) the SparkSession.

    ``master`` and ``conf`` override the defaults file, and that overrides ``JOB_DEFAULTS[job]``,
    when run directly; under ``spark-submit`` only ``conf`` and the required settings are applied.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    ensure_java_home()
    builder = SparkSession.builder.appName(app_name)
    settings: dict[str, str] = {}
    if not under_spark_submit():
        settings.update(JOB_DEFAULTS.get(job or "", {}))
        settings.update(read_spark_defaults())
        builder = builder.master(master or os.environ.get("SPARK_MASTER", "local[*]"))
    settings.update(conf or {})
    settings.update(REQUIRED_CONF)
    if not under_spark_submit() and LOG4J_FILE.is_file():   # the JVM starts here: give it our log set-up
        java = settings.get("spark.driver.extraJavaOptions", "")
        if "log4j2.configurationFile" not in java:
            settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={LOG4J_FILE.as_uri()} {java}".strip()
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark session %s master=%s version=%s", app_name, spark.sparkContext.master, spark.version)
    return spark
