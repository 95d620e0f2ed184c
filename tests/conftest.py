"""One session-scoped local SparkSession for the whole suite."""
from __future__ import annotations

import pytest

from retail_ann.spark import build_session


@pytest.fixture(scope="session")
def spark():
    session = build_session(
        "retail-ann-tests",
        master="local[2]",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
        },
    )
    yield session
    session.stop()
