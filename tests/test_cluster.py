"""The pipeline through ./spark-submit.sh on a real Spark standalone cluster that loses an executor.

A Master and two 1-core Workers on 127.0.0.1 (tests/cluster.py). Executors run a Python that
cannot import retail_ann (tests/cluster.py:python_env_without_retail_ann), shipped as a
venv-pack-style archive: the jobs only work if spark-submit.sh ships the package (--py-files) and
the environment (--archives ...#environment) for real.

generate -> features (-> train -> score, once jobs/train.py and jobs/score.py exist). In the middle
of features (and of score) one executor JVM gets SIGKILL while it runs a task; the job must still
succeed with exactly one row per customer, the event log must show the executor removed and its
lost tasks run again, and the Worker must have launched a replacement. A job over a missing input
exits 2. The cluster is stopped whatever happens, with no process left behind.

Cost: 310-370 CPU-seconds, mostly JVM start-up and the jobs' own work (bench/cluster_timings.py;
5-9 min wall on a 2-core machine also running other work at load 6-13). To fit a 2-core box, every JVM runs
with C1 only and the serial GC (StandaloneCluster.jvm_opts, ~40% less CPU for short-lived JVMs),
the missing-input job runs while generate holds both cores (so it gets no executors), and train
runs two epochs without a report. Only Java is required; without it the cluster tests skip.
Timings are printed (pytest -s) and written to <basetemp>/timings.json, and to
$RETAIL_ANN_CLUSTER_TIMINGS when set.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

try:
    from tests.cluster import (
        REPO, SUBMIT, Job, JobRun, StandaloneCluster, java_home, python_env_without_retail_ann, read_event_log,
        recovery, submit,
    )
except ImportError:  # tests/ itself on sys.path (pytest's rootdir-less "prepend" import)
    from cluster import (  # type: ignore[no-redef]
        REPO, SUBMIT, Job, JobRun, StandaloneCluster, java_home, python_env_without_retail_ann, read_event_log,
        recovery, submit,
    )

CUSTOMERS, DAYS, START = 20_000, 120, "2024-01-01"
AS_OF, LOOKBACK, HORIZON = dt.date(2024, 4, 1), 90, 29   # horizon ends on the last generated day
JOB_TIMEOUT = 420.0                                        # seconds, per job (a loaded 2-core box)

pytestmark = pytest.mark.slow
needs_java = pytest.mark.skipif(java_home() is None, reason="no Java (JDK 17): cannot start a Spark standalone cluster")


# ---------------------------------------------------------------------------------------------
# spark-submit.sh without a cluster (fast)
# ---------------------------------------------------------------------------------------------

def _script(*args: str, **env: str) -> subprocess.CompletedProcess:
    # The suite's SparkSession exports PYSPARK_PYTHON into this process; the script must choose its
    # Pythons from what each test passes, not from whichever test happened to run first.
    inherited = ("RETAIL_ANN_", "SPARK_SUBMIT_OPTS_EXTRA", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    e = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    e.update(env)
    return subprocess.run([str(SUBMIT), *args], capture_output=True, text=True, env=e, cwd=REPO, timeout=60)


def test_unknown_job_or_no_job_exits_2():
    for args in ((), ("no-such-job",), ("../setup",)):
        r = _script(*args)
        assert r.returncode == 2, r
        assert "usage:" in r.stderr and "features" in r.stderr


def test_help_exits_0_and_names_the_environment_variables():
    r = _script("--help")
    assert r.returncode == 0 and "RETAIL_ANN_ENV_ARCHIVE" in r.stdout and "SPARK_MASTER" in r.stdout
    assert "jobs: " in r.stdout and " features " in r.stdout


def test_command_ships_package_and_merges_options():
    r = _script("features", "--py-files", "extra.zip", "--archives", "data.tgz#data", "--", "--out", "x",
                RETAIL_ANN_DRY_RUN="1", SPARK_SUBMIT_OPTS_EXTRA="--conf spark.x=1 --py-files=more.py",
                RETAIL_ANN_ENV_ARCHIVE=str(SUBMIT), SPARK_MASTER="spark://h:7077")
    assert r.returncode == 0, r.stderr
    cmd = r.stdout.splitlines()
    opt = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
    assert cmd[0].endswith("/bin/spark-submit")
    assert opt["--master"] == "spark://h:7077"
    assert opt["--properties-file"] == str(REPO / "conf" / "spark-defaults.conf")
    package, *rest = opt["--py-files"].split(",")
    assert Path(package).parent == REPO / "build" and package.endswith(".zip") and rest == ["more.py", "extra.zip"]
    assert opt["--archives"] == f"{SUBMIT}#environment,data.tgz#data"
    confs = [cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i] == "--conf"]
    assert "spark.pyspark.python=./environment/bin/python" in confs and "spark.x=1" in confs
    assert cmd[-3:] == [str(REPO / "jobs" / "features.py"), "--out", "x"]


def test_jars_for_s3a_paths_and_delta_formats_are_added_to_the_users_packages():
    r = _script("score", "--packages", "org.example:extra:1.0", "--exclude-packages", "org.example:unwanted", "--",
                "--features", "s3a://lake/features", "--model", "m", "--out", "s3a://lake/predictions",
                "--output-format", "delta", RETAIL_ANN_DRY_RUN="1")
    assert r.returncode == 0, r.stderr
    cmd = r.stdout.splitlines()
    assert cmd.count("--packages") == 1 and cmd.count("--exclude-packages") == 1
    assert cmd[cmd.index("--packages") + 1].split(",") == [
        "org.example:extra:1.0", "org.apache.hadoop:hadoop-aws:3.4.1", "org.apache.spark:spark-hadoop-cloud_2.13:4.0.1",
        "io.delta:delta-spark_2.13:4.0.0"]
    excluded = cmd[cmd.index("--exclude-packages") + 1].split(",")
    assert excluded[0] == "org.example:unwanted" and "org.apache.hadoop:hadoop-cloud-storage" in excluded
    plain = _script("features", "--", "--out", "/data/x", RETAIL_ANN_DRY_RUN="1").stdout.splitlines()
    assert "--packages" not in plain and "--exclude-packages" not in plain


def test_package_zip_has_every_module_and_is_rebuilt_when_stale(tmp_path):
    env = {**os.environ, "RETAIL_ANN_BUILD_DIR": str(tmp_path)}
    build = [str(REPO / "bin" / "build-package.sh")]
    first = Path(subprocess.run(build, env=env, capture_output=True, text=True, check=True).stdout.split()[-1])
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "retail_ann").rglob("*.py") if "__pycache__" not in p.parts}
    with zipfile.ZipFile(first) as zf:
        assert sources <= set(zf.namelist())
    os.utime(first, (1_000_000_000, 1_000_000_000))          # older than every source: stale
    subprocess.run(build, env=env, capture_output=True, check=True)
    assert first.stat().st_mtime > 1_000_000_000
    before = first.stat().st_mtime_ns
    subprocess.run(build, env=env, capture_output=True, check=True)  # fresh: left alone
    assert first.stat().st_mtime_ns == before


# ---------------------------------------------------------------------------------------------
# On the cluster
# ---------------------------------------------------------------------------------------------

class Timings(dict):
    def record(self, name: str, seconds: float) -> None:
        self[name] = round(seconds, 1)


@pytest.fixture(scope="module")
def timings(tmp_path_factory):
    t = Timings()
    yield t
    if t:
        text = json.dumps(t, indent=2)
        print(f"\ncluster test timings (s): {text}")
        (tmp_path_factory.getbasetemp() / "timings.json").write_text(text)
        if os.environ.get("RETAIL_ANN_CLUSTER_TIMINGS"):
            Path(os.environ["RETAIL_ANN_CLUSTER_TIMINGS"]).write_text(text)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, timings):
    if java_home() is None:
        pytest.skip("no Java (JDK 17): cannot start a Spark standalone cluster")
    c = StandaloneCluster(tmp_path_factory.mktemp("standalone"), workers=2, cores=1, memory="2g")
    start = time.monotonic()
    try:
        c.start()
        timings.record("cluster_start", time.monotonic() - start)
        yield c
    finally:
        c.stop()
        left = c.leftovers()
        assert not left, f"processes left after stopping the cluster: {left}"


@pytest.fixture(scope="module")
def job_env(cluster):
    """Environment for ./spark-submit.sh against the cluster: executors on a Python without
    retail_ann, shipped as an archive; plain event logs; drivers small and without a UI."""
    root = cluster.root
    archive = python_env_without_retail_ann(root / "exec-env")
    probe = subprocess.run([str(root / "exec-env" / "bin" / "python"), "-c", "import retail_ann"],
                           cwd=root, capture_output=True, env=cluster.env())
    assert probe.returncode != 0, "the executors' Python must not see retail_ann by itself"
    subprocess.run([str(root / "exec-env" / "bin" / "python"), "-c", "import numpy, pyarrow, pandas, pyspark"],
                   cwd=root, env=cluster.env(), check=True)
    (root / "events").mkdir()
    env = cluster.env()
    env.update({
        "SPARK_MASTER": cluster.master_url,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "RETAIL_ANN_ENV_ARCHIVE": str(archive),
        "SPARK_SUBMIT_OPTS_EXTRA": " ".join([
            "--driver-memory 2g --executor-memory 1g",
            "--conf spark.ui.enabled=false",
            "--conf spark.eventLog.enabled=true --conf spark.eventLog.compress=false",
            "--conf spark.eventLog.rolling.enabled=false",
            f"--conf spark.eventLog.dir={(root / 'events').as_uri()}",
        ]),
    })
    return env


def _ok(run: JobRun) -> None:
    assert run.returncode == 0, f"{run.job} exited {run.returncode}:\n{run.tail()}"


def _known_customers(shop: Path, as_of: dt.date) -> set[str]:
    """Customers known before ``as_of``, straight from the generated files (not through Spark):
    signed up before it, or with any transaction or visit before it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    c = ds.dataset(shop / "customers").to_table(columns=["customer_id", "signup_date"])
    known = set(c.filter(pc.less(c["signup_date"], pa.scalar(as_of)))["customer_id"].to_pylist())
    cutoff = dt.datetime.combine(as_of, dt.time())
    for table in ("transactions", "clickstream"):
        t = ds.dataset(shop / table).to_table(columns=["customer_id", "ts"])
        ts = t["ts"]
        if ts.type.tz is not None:
            ts = pc.cast(ts, pa.timestamp(ts.type.unit))  # wall clock in UTC
        known |= set(t.filter(pc.less(ts, pa.scalar(cutoff, ts.type)))["customer_id"].to_pylist())
    return known


def _ids(directory: Path) -> list[str]:
    import pyarrow.dataset as ds

    return ds.dataset(directory, format="parquet").to_table(columns=["customer_id"])["customer_id"].to_pylist()


def _assert_survived_kill(cluster: StandaloneCluster, run: JobRun) -> dict:
    """The kill really happened and the cluster recovered from it; returns what happened."""
    kill = run.kill
    assert kill is not None, f"{run.job} finished before an executor could be killed mid-task ({run.seconds:.0f}s)"
    assert kill.dead, f"executor pid {kill.pid} still alive after SIGKILL"
    rec = recovery(read_event_log(cluster.root / "events", kill.app_id), kill.executor_id)
    reason = rec.executors_removed.get(kill.executor_id)
    assert reason is not None, f"the driver never removed executor {kill.executor_id}: {rec}"
    assert "137" in reason, f"executor {kill.executor_id} removed for another reason: {reason}"
    assert rec.lost_tasks, f"no task of executor {kill.executor_id} failed with ExecutorLostFailure: {rec}"
    assert rec.rerun_ok, f"no lost task was run again successfully: {rec}"
    launched = cluster.executor_dirs(kill.app_id)
    assert len(launched) >= 3, f"no replacement executor was launched: {launched}"
    return {"job": run.job, "executor": kill.executor_id, "pid": kill.pid, "at_s": kill.at_seconds,
            "tasks_finished_before": kill.tasks_finished_before, "tids_in_flight": sorted(kill.tids_in_flight),
            "removed_reason": reason, "lost_tasks(stage,partition)": rec.lost_tasks, "rerun_ok": rec.rerun_ok,
            "executors_added": rec.executors_added, "executor_dirs": len(launched)}


def _kill_in_aggregation(driver_log: str, tasks_finished: int) -> bool:
    """features: once validation is over (its stage log line), i.e. in the shuffles and cache of the
    aggregation; or, should that line ever change, after 40 of its ~85 tasks."""
    return "stage=features.validate" in driver_log or tasks_finished >= 40


@pytest.fixture(scope="module")
def cluster_shop(cluster, job_env, timings):
    """generate on the cluster; meanwhile, once generate holds both cores, a features job over a
    missing input (it needs no executor, so it gets none: it only costs a driver)."""
    root = cluster.root
    gen = Job("generate", ["--out", str(root / "shop"), "--customers", str(CUSTOMERS), "--days", str(DAYS),
                           "--start", START], job_env, root / "generate.log", JOB_TIMEOUT)
    missing_args = ["--transactions", str(root / "nowhere"), "--as-of", AS_OF.isoformat(), "--out", str(root / "never")]
    missing = None
    try:
        while gen.running():
            if missing is None and len(cluster.executors()) >= 2:
                missing = Job("features", missing_args, job_env, root / "missing.log", JOB_TIMEOUT)
            time.sleep(0.2)
        gen_run = gen.wait()
        missing_run = missing.wait() if missing else submit("features", missing_args, job_env, root / "missing.log", JOB_TIMEOUT)
    finally:
        gen.terminate()
        if missing:
            missing.terminate()
    timings.record("generate", gen_run.seconds)
    timings.record("missing_input_alongside", missing_run.seconds)
    return root / "shop", gen_run, missing_run


@needs_java
def test_generate_on_the_cluster(cluster_shop):
    path, run, _ = cluster_shop
    _ok(run)
    for table in ("customers", "transactions", "clickstream"):
        assert list((path / table).glob("*.parquet")), f"no {table} written"
    assert len(set(_ids(path / "customers"))) == CUSTOMERS


@needs_java
def test_missing_input_exits_2_on_the_cluster(cluster_shop, cluster):
    _, _, run = cluster_shop
    assert run.returncode == 2, f"expected exit 2, got {run.returncode}:\n{run.tail()}"
    assert "input not found" in run.text()
    assert not (cluster.root / "never").exists()


@pytest.fixture(scope="module")
def cluster_features(cluster, job_env, cluster_shop, timings):
    path, gen_run, _ = cluster_shop
    _ok(gen_run)
    out = cluster.root / "features"
    # spark-submit options after the job name, before `--`
    run = submit("features", ["--conf", "spark.task.maxFailures=4", "--",
                              "--transactions", str(path / "transactions"), "--clickstream", str(path / "clickstream"),
                              "--customers", str(path / "customers"), "--as-of", AS_OF.isoformat(),
                              "--lookback-days", str(LOOKBACK), "--horizon-days", str(HORIZON), "--out", str(out)],
                 job_env, cluster.root / "features.log", JOB_TIMEOUT, cluster=cluster, kill_when=_kill_in_aggregation)
    timings.record("features", run.seconds)
    return out, run


@needs_java
def test_features_survive_a_killed_executor(cluster, cluster_shop, cluster_features):
    out, run = cluster_features
    _ok(run)
    print("\nfeatures, executor kill:", json.dumps(_assert_survived_kill(cluster, run), default=list))
    ids = _ids(out / f"as_of_date={AS_OF.isoformat()}")
    expected = _known_customers(cluster_shop[0], AS_OF)
    assert len(ids) == len(set(ids)) == len(expected), (len(ids), len(set(ids)), len(expected))
    assert set(ids) == expected


@needs_java
def test_train_then_score_survives_a_killed_executor(cluster, job_env, cluster_features, timings):
    out, features_run = cluster_features
    _ok(features_run)
    model, predictions = cluster.root / "model", cluster.root / "predictions"
    # Training itself is tested elsewhere: here two epochs and no report are enough.
    config = cluster.root / "train.yaml"
    config.write_text("epochs: 2\nbatch_size: 256\npatience: 1\nreport: false\n")
    run = submit("train", ["--features", str(out), "--out", str(model), "--config", str(config)],
                 job_env, cluster.root / "train.log", JOB_TIMEOUT)
    timings.record("train", run.seconds)
    _ok(run)
    run = submit("score", ["--features", str(out), "--model", str(model), "--out", str(predictions)],
                 job_env, cluster.root / "score.log", JOB_TIMEOUT, cluster=cluster,
                 kill_when=lambda log, finished: finished >= 1)
    timings.record("score", run.seconds)
    _ok(run)
    print("\nscore, executor kill:", json.dumps(_assert_survived_kill(cluster, run), default=list))
    scored = _ids(predictions / f"as_of_date={AS_OF.isoformat()}")
    expected = set(_ids(out / f"as_of_date={AS_OF.isoformat()}"))
    assert len(scored) == len(set(scored)) == len(expected)
    assert set(scored) == expected
