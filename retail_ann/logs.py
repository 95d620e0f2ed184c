"""Logging set-up and the one-line-per-stage timer every job uses."""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def use_real_stderr() -> None:
    """Under ``spark-submit`` the Python driver's stderr is a pipe Spark merges into its stdout, so
    logs and error lines would reach stdout; write them to the stderr of the JVM that started us
    (the stderr ``spark-submit`` was given) instead, where Linux shows it."""
    from retail_ann.spark import under_spark_submit

    parent_stderr = f"/proc/{os.getppid()}/fd/2"
    if not under_spark_submit() or not os.path.exists(parent_stderr):
        return
    try:
        sys.stderr = open(parent_stderr, "w", buffering=1, encoding="utf-8", errors="replace")
    except OSError:   # not ours to open: stay with the merged stream
        pass


def configure_logging(level: str = "INFO") -> None:
    """retail-ann's log at ``level`` on stderr (Spark's own: conf/log4j2.properties)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, datefmt="%H:%M:%S", force=True, stream=sys.stderr)
    for noisy in ("py4j", "matplotlib", "PIL", "absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pyspark logs every analysis error it raises, with the whole stack as JSON on stderr, even when
    # the caller handles it (the CLI turns it into one line); only --log-level DEBUG keeps that.
    from pyspark.logger import PySparkLogger   # its own logger class: a plain one would break its calls

    for context_logger in ("DataFrameQueryContextLogger", "SQLQueryContextLogger"):
        PySparkLogger.getLogger(context_logger).setLevel(
            logging.DEBUG if level.upper() == "DEBUG" else logging.CRITICAL)


class Stage:
    """What a stage reports: fill ``rows`` (and any extra fields) inside the ``with`` block."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: int | None = None
        self.extra: dict[str, object] = {}
        self.seconds = 0.0


@contextmanager
def stage(name: str, logger: logging.Logger) -> Iterator[Stage]:
    """Time a pipeline stage and log one line with its row count and duration when it ends."""
    s = Stage(name)
    start = time.perf_counter()
    try:
        yield s
    finally:
        s.seconds = round(time.perf_counter() - start, 2)
        parts = [f"stage={name}", f"seconds={s.seconds}"]
        if s.rows is not None:
            parts.append(f"rows={s.rows}")
        parts += [f"{k}={v}" for k, v in s.extra.items()]
        logger.info(" ".join(parts))
