"""Publishing a partition survives a kill at any moment: a reader sees the old complete partition or
the new complete one, and the next run finishes or undoes what the killed one left."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from pyspark.sql import functions as F

from retail_ann import publish
from retail_ann.schemas import AS_OF_DATE, CUSTOMER_ID

DATE = "2024-07-01"
STEPS = ("journal-written", "staged", "swapping", "old-aside", "swapped")


class Killed(BaseException):
    """Stands for SIGKILL: publish has no cleanup code, so an exception leaves what a kill leaves."""


def _frame(spark, n: int, tag: str):
    return spark.range(n).select(F.concat(F.lit(tag), F.col("id").cast("string")).alias(CUSTOMER_ID),
                                 F.lit(DATE).cast("date").alias(AS_OF_DATE))


def _publish(spark, out: Path, n: int, tag: str) -> dict:
    return publish.publish_partitions(spark, _frame(spark, n, tag), str(out), AS_OF_DATE, [DATE], n,
                                      lambda rows: {"rows": rows, "tag": tag})


def _partition_state(out: Path) -> tuple[str, int] | None:
    """(tag of the manifest, rows) of the live partition, checking it is complete; None if absent."""
    part = out / f"{AS_OF_DATE}={DATE}"
    if not part.exists():
        return None
    manifest = json.loads((part / "_manifest.json").read_text())
    assert (part / "_SUCCESS").exists()
    ids = ds.dataset(part, format="parquet").to_table(columns=[CUSTOMER_ID])[CUSTOMER_ID].to_pylist()
    assert len(ids) == manifest["rows"] and {i[0] for i in ids} == {manifest["tag"]}, "a mixed or partial partition"
    return manifest["tag"], len(ids)


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-exchange", "two-renames"])
@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_leaves_a_complete_partition_and_a_rerun_repairs(spark, tmp_path, monkeypatch, step,
                                                                              exchange):
    if not exchange:
        monkeypatch.setattr(publish._Storage, "exchange", lambda self, a, b: False)
    elif publish._RENAMEAT2 is None:
        pytest.skip("no renameat2 in this libc")
    out = tmp_path / "out"
    _publish(spark, out, 30, "a")
    assert _partition_state(out) == ("a", 30)

    def hook(name):
        if name == step:
            raise Killed(name)

    monkeypatch.setattr(publish, "STEP_HOOK", hook)
    if step == "old-aside" and exchange:   # the exchange has no such step: the kill never comes
        _publish(spark, out, 50, "b")
        assert _partition_state(out) == ("b", 50)
        return
    with pytest.raises(Killed):
        _publish(spark, out, 50, "b")
    monkeypatch.setattr(publish, "STEP_HOOK", None)
    after_kill = _partition_state(out)
    expected = {"journal-written": ("a", 30), "staged": ("a", 30), "swapping": ("a", 30),
                "old-aside": None, "swapped": ("b", 50)}[step]
    assert after_kill == expected
    # what the killed run left is repaired before the next run does anything: old-aside was about to
    # move the new rows in, so recovery finishes that swap (it is what a reader sees from then on)
    publish.recover(spark, str(out), [f"{AS_OF_DATE}={DATE}"])
    assert _partition_state(out) == {"old-aside": ("b", 50), "swapping": ("b", 50)}.get(step, expected)
    assert not list((out / publish.PUBLISH_DIR).iterdir())
    _publish(spark, out, 70, "c")
    assert _partition_state(out) == ("c", 70)
    assert sorted(p.name for p in out.iterdir()) == [publish.PUBLISH_DIR, f"{AS_OF_DATE}={DATE}"]
    assert not list((out / publish.PUBLISH_DIR).iterdir())


def test_other_dates_journals_are_left_alone_and_stranded_spark_staging_is_removed(spark, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _publish(spark, out, 10, "a")
    other = out / publish.PUBLISH_DIR / "someone-else"
    (other / f"{AS_OF_DATE}=2024-08-01").mkdir(parents=True)
    (out / publish.PUBLISH_DIR / "someone-else.json").write_text(json.dumps(
        {"run": "someone-else", "entries": [f"{AS_OF_DATE}=2024-08-01"], "state": "writing"}))
    (out / publish.PUBLISH_DIR / "orphan").mkdir()               # staging whose journal is gone
    (out / ".spark-staging-0123").mkdir()                         # what dynamic overwrite stranded
    _publish(spark, out, 20, "b")
    assert _partition_state(out) == ("b", 20)
    assert other.is_dir() and (out / publish.PUBLISH_DIR / "someone-else.json").exists()
    assert not (out / publish.PUBLISH_DIR / "orphan").exists() and not (out / ".spark-staging-0123").exists()


@pytest.mark.parametrize("step", ["staged", "swapping", "swapped"])
def test_tables_replaced_together_survive_a_kill(spark, tmp_path, monkeypatch, step):
    """generate and import replace whole tables the same way: after a kill the old tables are whole,
    or the next run's recovery completes the new ones."""
    out = tmp_path / "shop"

    def tables(n, tag):
        return {name: _frame(spark, n, tag) for name in ("customers", "transactions")}

    def state():
        return {name: sorted({r[CUSTOMER_ID][0] for r in spark.read.parquet(str(out / name)).collect()}) +
                [spark.read.parquet(str(out / name)).count()] for name in ("customers", "transactions")}

    assert publish.publish_tables(spark, tables(5, "a"), str(out)) == {"customers": 5, "transactions": 5}

    def hook(name):
        if name == step:
            raise Killed(name)

    monkeypatch.setattr(publish, "STEP_HOOK", hook)
    with pytest.raises(Killed):
        publish.publish_tables(spark, tables(8, "b"), str(out))
    monkeypatch.setattr(publish, "STEP_HOOK", None)
    old, new = {n: ["a", 5] for n in ("customers", "transactions")}, {n: ["b", 8] for n in ("customers", "transactions")}
    assert state() == (new if step == "swapped" else old)
    publish.recover(spark, str(out), ["customers", "transactions"])
    assert state() == (old if step == "staged" else new)
    assert not list((out / publish.PUBLISH_DIR).iterdir())


def test_a_wrong_row_count_publishes_nothing(spark, tmp_path):
    out = tmp_path / "out"
    _publish(spark, out, 10, "a")
    with pytest.raises(RuntimeError, match="staged 12 rows in partitions \\['2024-07-01'\\] for 11 rows"):
        publish.publish_partitions(spark, _frame(spark, 12, "b"), str(out), AS_OF_DATE, [DATE], 11,
                                   lambda rows: {"rows": rows, "tag": "b"})
    assert _partition_state(out) == ("a", 10)
    assert not list((out / publish.PUBLISH_DIR).iterdir())


@pytest.mark.slow
def test_score_killed_at_random_moments_leaves_a_complete_partition(shop, trained_model, tmp_path):
    """Real SIGKILLs of `retail-ann score` rerunning into an existing partition, at random delays
    spread over the job's own run time; after each, the partition is the old or the new one, whole."""
    out = tmp_path / "predictions"
    args = [sys.executable, "-m", "retail_ann.cli", "score", "--features", str(shop["features"]),
            "--model", str(trained_model["dir"]), "--out", str(out), "--master", "local[1]", "--log-level", "WARNING"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.time()
    assert subprocess.run(args, env=env, capture_output=True, timeout=600).returncode == 0
    run_time = time.time() - started
    part = out / f"{AS_OF_DATE}={shop['manifest'][AS_OF_DATE]}"
    n = json.loads((part / "_manifest.json").read_text())["rows_out"]
    rng = random.Random(17)
    for _ in range(5):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0.5, 1.0) * run_time)
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # the JVM too, as a scheduler's kill would
        except ProcessLookupError:   # a warm run finished first: its partition must be whole too
            pass
        proc.wait()
        manifest = json.loads((part / "_manifest.json").read_text())
        rows = ds.dataset(part, format="parquet").count_rows()
        assert rows == manifest["rows_out"] == n and (part / "_SUCCESS").exists()
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert ds.dataset(part, format="parquet").count_rows() == n
    assert not list((out / publish.PUBLISH_DIR).iterdir()) and not list(out.glob(".spark-staging-*"))
