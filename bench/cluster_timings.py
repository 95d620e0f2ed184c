"""Wall time and CPU of the standalone-cluster test (tests/test_cluster.py), by job and by process.

    .venv/bin/python bench/cluster_timings.py [--out bench/out/cluster_timings.json]

Runs the test with pytest under a private base temp directory and, once a second, samples the CPU
time (user + system, /proc/<pid>/stat) of every process belonging to it: the Master and Workers,
executor JVMs and their Python workers, and the drivers (spark-submit's JVM and the job's Python).
The CI budget is what this guards: on a 2-core box the wall time is roughly the CPU total / ~1.3.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TCK = os.sysconf("SC_CLK_TCK")


def _kind(args: str, cwd: str, root: str) -> str | None:
    if "deploy.master.Master" in args:
        return "master"
    if "deploy.worker.Worker" in args:
        return "worker"
    if "CoarseGrainedExecutorBackend" in args:
        return "executor_jvm"
    if "pyspark.daemon" in args or "pyspark.worker" in args:
        return "executor_python" if cwd.startswith(root) else None
    if "SparkSubmit" in args and str(REPO / "jobs") in args:
        return "driver_jvm"
    if str(REPO / "jobs") in args:
        return "driver_python"
    return None


def sample(root: str, cpu: dict[int, tuple[str, float]], stop: threading.Event) -> None:
    while not stop.is_set():
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                args = " ".join(a.decode(errors="replace") for a in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0"))
                try:
                    cwd = os.readlink(f"/proc/{p}/cwd")
                except OSError:
                    cwd = ""
                kind = _kind(args, cwd, root)
                if kind is None or (root not in args and not cwd.startswith(root)):  # not ours
                    continue
                stat = Path(f"/proc/{p}/stat").read_text()
                rest = stat[stat.rfind(")") + 2:].split()
                cpu[int(p)] = (kind, (int(rest[11]) + int(rest[12])) / TCK)
            except (OSError, IndexError, ValueError):
                continue
        stop.wait(1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "cluster_timings.json"))
    ap.add_argument("--keep", action="store_true", help="keep the cluster's directory (logs, event logs, data)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    timings = base / "timings.json"
    cpu: dict[int, tuple[str, float]] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(str(base), cpu, stop), daemon=True)
    sampler.start()
    start = time.monotonic()
    t0 = os.times()
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          f"--basetemp={base / 'pt'}", "tests/test_cluster.py"],
                         cwd=REPO, env={**os.environ, "RETAIL_ANN_CLUSTER_TIMINGS": str(timings)})
    wall = time.monotonic() - start
    t1 = os.times()
    stop.set()
    sampler.join()
    by_kind: dict[str, float] = collections.defaultdict(float)
    count: collections.Counter = collections.Counter()
    for kind, seconds in cpu.values():
        by_kind[kind] += seconds
        count[kind] += 1
    result = {
        "pytest_exit": rc, "wall_s": round(wall, 1),
        "cpu_s_all_children": round((t1.children_user - t0.children_user) + (t1.children_system - t0.children_system), 1),
        "load_average_at_end": os.getloadavg(),
        "jobs_s": json.loads(timings.read_text()) if timings.exists() else {},
        "cpu_s_by_process": {k: {"cpu_s": round(v, 1), "processes": count[k]} for k, v in sorted(by_kind.items())},
    }
    if args.keep:
        result["kept"] = str(base)
    else:
        shutil.rmtree(base, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
