"""A throwaway Spark standalone cluster on 127.0.0.1, for tests and benchmarks.

One Master and N Workers started from pyspark's own ``bin/spark-class`` (no Spark install needed),
each in its own session/process group with its logs, work, local and conf directories under one
root directory; ports (RPC and web UI) are chosen by the JVMs (port 0) and read back from the
logs. ``stop()`` terminates the Workers (which kill their executors) and the Master, then kills
whatever is left of their process groups and anything else still running from the root
directory; ``leftovers()`` tells whether that worked.

Also here: jobs through ``./spark-submit.sh`` with a time limit, killing an executor in the middle
of a job (SIGKILL to a ``CoarseGrainedExecutorBackend`` JVM whose parent is one of our Workers,
while it runs a task), and reading the driver's event log to prove the executor was lost and its
tasks ran again.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
SUBMIT = REPO / "spark-submit.sh"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def spark_home() -> Path:
    """$SPARK_HOME, else the directory of the installed pyspark (it carries bin/ and jars/)."""
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_home() -> str | None:
    """$JAVA_HOME, else derived from the ``java`` on PATH; None when there is no Java."""
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return home
    java = shutil.which("java")
    return str(Path(java).resolve().parent.parent) if java else None


# ---------------------------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------------------------

def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def cmdline(pid: int) -> list[str]:
    return [a.decode(errors="replace") for a in _read(f"/proc/{pid}/cmdline").split(b"\0") if a]


def ppid_and_state(pid: int) -> tuple[int, str] | None:
    stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
    if not stat:
        return None
    rest = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
    return int(rest[1]), rest[0]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as dead)."""
    ps = ppid_and_state(pid)
    return ps is not None and ps[1] != "Z"


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root_pids: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        ps = ppid_and_state(pid)
        if ps:
            children.setdefault(ps[0], []).append(pid)
    out, todo = [], list(root_pids)
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------------------------

@dataclass
class Executor:
    pid: int
    app_id: str
    executor_id: str
    worker: int  # index of the Worker that launched it

    def log(self, cluster: "StandaloneCluster") -> Path:
        return cluster.work_dir(self.worker) / self.app_id / self.executor_id / "stderr"


@dataclass
class StandaloneCluster:
    root: Path
    workers: int = 2
    cores: int = 1
    memory: str = "2g"
    # Every JVM of the cluster and of the drivers submitted with env(): C1 only and the serial GC
    # cut the CPU of short-lived JVMs by ~40% (measured), which is what a 2-core CI box runs out of.
    jvm_opts: str = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    master_url: str = ""
    master_ui: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)
    worker_procs: list[subprocess.Popen] = field(default_factory=list)

    # -- layout ---------------------------------------------------------------------------------
    def log_file(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def work_dir(self, i: int) -> Path:
        return self.root / "work" / f"worker-{i}"

    def env(self) -> dict[str, str]:
        """Environment of the daemons and of the drivers submitted to them."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYSPARK_", "SPARK_")) and k not in ("PYTHONPATH", "JAVA_TOOL_OPTIONS")}
        env.update({
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_HOSTNAME": "127.0.0.1",
            "SPARK_CONF_DIR": str(self.root / "conf"),   # empty: no stray spark-defaults.conf
            "SPARK_LOCAL_DIRS": str(self.root / "local"),
            "SPARK_LOG_DIR": str(self.root / "logs"),
        })
        # Executors inherit this from their Worker. java.io.tmpdir: Spark leaves a /tmp/spark-*
        # copy of every --archives file behind (driver and executors); keep those under root.
        env["JAVA_TOOL_OPTIONS"] = f"{self.jvm_opts} -Djava.io.tmpdir={self.root / 'tmp'}".strip()
        jh = java_home()
        if jh:
            env["JAVA_HOME"] = jh
        return env

    # -- life cycle -----------------------------------------------------------------------------
    def _spawn(self, name: str, cls: str, *args: str) -> subprocess.Popen:
        log = open(self.log_file(name), "wb")
        try:
            proc = subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), cls, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env(), cwd=self.root, start_new_session=True,
            )
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def _wait_log(self, name: str, proc: subprocess.Popen, pattern: str, deadline: float) -> re.Match:
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.log_file(name).read_text(errors="replace"))
            if m:
                return m
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: no {pattern!r} in its log in time:\n{self.tail(name)}")
            time.sleep(0.2)

    def start(self, timeout: float = 180.0) -> "StandaloneCluster":
        """Start the Master, then the Workers; return once all Workers are registered and ALIVE."""
        if not java_home():
            raise RuntimeError("no Java: install a JDK 17 or set JAVA_HOME")
        for d in ("conf", "logs", "local", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        master = self._spawn("master", "org.apache.spark.deploy.master.Master",
                             "--host", "127.0.0.1", "--port", "0", "--webui-port", "0")
        self.master_url = self._wait_log("master", master, r"Starting Spark master at (spark://\S+)", deadline)[1]
        ui_port = self._wait_log("master", master, r"service 'MasterUI' on port (\d+)", deadline)[1]
        self.master_ui = f"http://127.0.0.1:{ui_port}"
        self._wait_log("master", master, r"New state: ALIVE", deadline)
        for i in range(self.workers):
            self.work_dir(i).mkdir(parents=True, exist_ok=True)
            self.worker_procs.append(self._spawn(
                f"worker-{i}", "org.apache.spark.deploy.worker.Worker",
                "--host", "127.0.0.1", "--port", "0", "--webui-port", "0",
                "--cores", str(self.cores), "--memory", self.memory,
                "--work-dir", str(self.work_dir(i)), self.master_url))
        while True:
            state = self.state()
            alive_workers = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive_workers) == self.workers:
                return self
            for i, p in enumerate(self.worker_procs):
                if p.poll() is not None:
                    raise RuntimeError(f"worker-{i} exited with {p.returncode}:\n{self.tail(f'worker-{i}')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(alive_workers)}/{self.workers} workers registered in {timeout:.0f}s:\n"
                                   + self.tail("master"))
            time.sleep(0.3)

    def state(self) -> dict:
        """The Master's JSON status (workers, active and completed applications)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
        try:
            with opener.open(f"{self.master_ui}/json/", timeout=5) as r:
                return json.load(r)
        except (OSError, ValueError):
            return {}

    def stop(self, grace: float = 15.0) -> None:
        """Stop the Workers (they kill their executors), then the Master; then make sure."""
        for group in (self.worker_procs, [p for p in self.procs if p not in self.worker_procs]):
            for p in group:
                if p.poll() is None:
                    _kill_group(p.pid, signal.SIGTERM)
            end = time.monotonic() + grace
            for p in group:
                try:
                    p.wait(timeout=max(0.1, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for p in self.procs:  # whatever ignored SIGTERM, and any child left in the groups
            _kill_group(p.pid, signal.SIGKILL)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 10
        while self.leftovers() and time.monotonic() < end:
            time.sleep(0.2)

    def leftovers(self) -> list[int]:
        """Live processes of this cluster: started from, or referring to, its root directory."""
        root = str(self.root)
        me = os.getpid()
        return [pid for pid in all_pids()
                if pid != me and alive(pid)
                and (any(root in a for a in cmdline(pid)) or _cwd(pid).startswith(root))]

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- executors ------------------------------------------------------------------------------
    def executors(self) -> list[Executor]:
        """Live executor JVMs whose parent is one of our Workers."""
        worker_pids = {p.pid: i for i, p in enumerate(self.worker_procs)}
        out = []
        for pid in all_pids():
            ps = ppid_and_state(pid)
            if not ps or ps[0] not in worker_pids or ps[1] == "Z":
                continue
            args = cmdline(pid)
            if EXECUTOR_CLASS not in args:
                continue
            opt = {args[k]: args[k + 1] for k in range(len(args) - 1) if args[k].startswith("--")}
            out.append(Executor(pid, opt.get("--app-id", ""), opt.get("--executor-id", ""), worker_pids[ps[0]]))
        return out

    def executor_dirs(self, app_id: str) -> list[Path]:
        """One directory per executor ever launched for ``app_id`` (relaunched ones included)."""
        return sorted(d for i in range(self.workers) for d in (self.work_dir(i) / app_id).glob("*") if d.is_dir())

    def tail(self, name: str, lines: int = 40) -> str:
        f = self.log_file(name)
        return "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) if f.exists() else "(no log)"


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------

_RUNNING = re.compile(r"Running task \S+ in stage \S+ \(TID (\d+)\)")
_DONE = re.compile(r"(?:Finished task|Exception in task|Executor killed task|Executor interrupted and killed task) "
                   r"\S+ in stage \S+ \(TID (\d+)\)")


def task_progress(log: Path) -> tuple[int, set[str]]:
    """(tasks finished, TIDs in flight) from an executor's stderr."""
    text = log.read_text(errors="replace") if log.exists() else ""
    done = set(_DONE.findall(text))
    return len(done), set(_RUNNING.findall(text)) - done


@dataclass
class Kill:
    pid: int
    app_id: str
    executor_id: str
    tids_in_flight: set[str]
    at_seconds: float
    tasks_finished_before: int
    dead: bool = False


@dataclass
class JobRun:
    job: str
    returncode: int
    seconds: float
    log: Path
    kill: Kill | None = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


KillWhen = Callable[[str, int], bool]   # (driver log so far, tasks finished by the app) -> kill now?


class Job:
    """``./spark-submit.sh job args`` running in its own process group, output to ``log``."""

    def __init__(self, job: str, args: list[str], env: dict[str, str], log: Path, timeout: float):
        self.job, self.log, self.timeout = job, log, timeout
        self.start = time.monotonic()
        self.end: float | None = None
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(SUBMIT), job, *args], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        threading.Thread(target=self._clock, daemon=True).start()

    def _clock(self) -> None:
        self.proc.wait()
        self.end = time.monotonic()

    def running(self) -> bool:
        if self.proc.poll() is not None:
            return False
        if time.monotonic() - self.start > self.timeout:
            self.terminate()
            raise TimeoutError(f"{self.job} still running after {self.timeout:.0f}s:\n{_tail(self.log)}")
        return True

    def terminate(self) -> None:
        """Take the driver (spark-submit's JVM and the job's Python) down."""
        if self.proc.poll() is None:
            _kill_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def wait(self, cluster: StandaloneCluster | None = None, kill_when: KillWhen | None = None) -> JobRun:
        """Wait for the job; with ``kill_when``, SIGKILL one of its executors, at a moment that
        executor runs a task, once ``kill_when(driver log, tasks finished)`` holds."""
        kill = None
        watch = kill_when is not None and cluster is not None
        try:
            while self.running():
                if watch and kill is None:
                    kill = _maybe_kill(cluster, self.log, kill_when, time.monotonic() - self.start)
                time.sleep(0.1 if watch and kill is None else 0.5)
        finally:
            self.terminate()
        if kill is not None:
            end = time.monotonic() + 15
            while alive(kill.pid) and time.monotonic() < end:
                time.sleep(0.1)
            kill.dead = not alive(kill.pid)
        return JobRun(self.job, self.proc.returncode, (self.end or time.monotonic()) - self.start, self.log, kill)


def submit(job: str, args: list[str], env: dict[str, str], log: Path, timeout: float,
           cluster: StandaloneCluster | None = None, kill_when: KillWhen | None = None) -> JobRun:
    """Run ``./spark-submit.sh job args`` to the end (see ``Job.wait``)."""
    return Job(job, args, env, log, timeout).wait(cluster, kill_when)


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _maybe_kill(cluster: StandaloneCluster, driver_log: Path, kill_when: KillWhen, elapsed: float) -> Kill | None:
    executors = cluster.executors()
    if not executors:
        return None
    app_ids = {e.app_id for e in executors}
    finished = sum(task_progress(d / "stderr")[0] for a in app_ids for d in cluster.executor_dirs(a))
    if not kill_when(driver_log.read_text(errors="replace"), finished):
        return None
    for e in executors:
        if not task_progress(e.log(cluster))[1]:
            continue
        # Freeze it, then look again: a task that finished meanwhile would make the kill miss it.
        try:
            os.kill(e.pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        in_flight = task_progress(e.log(cluster))[1]
        os.kill(e.pid, signal.SIGKILL if in_flight else signal.SIGCONT)
        if in_flight:
            return Kill(e.pid, e.app_id, e.executor_id, in_flight, round(elapsed, 1), finished)
    return None


# ---------------------------------------------------------------------------------------------
# Event logs (spark.eventLog.enabled=true, spark.eventLog.dir=file://...)
# ---------------------------------------------------------------------------------------------

def read_event_log(directory: Path, app_id: str) -> list[dict]:
    """The events of ``app_id``: a single file (``spark.eventLog.rolling.enabled=false``) or a
    rolling ``eventlog_v2_<app>/events_<n>_<app>`` directory; uncompressed
    (``spark.eventLog.compress=false``)."""
    directory = Path(directory)
    files = [p for p in directory.glob(f"{app_id}*") if p.is_file()]
    rolled = directory / f"eventlog_v2_{app_id}"
    if rolled.is_dir():
        files = sorted(rolled.glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
    if not files:
        raise FileNotFoundError(f"no event log for {app_id} in {directory}: {sorted(os.listdir(directory))}")
    if any(p.suffix in (".zstd", ".lz4", ".snappy", ".lzf") for p in files):
        raise ValueError(f"compressed event log {files}: run with spark.eventLog.compress=false")
    return [json.loads(line) for p in files for line in p.read_text().splitlines() if line.strip()]


@dataclass
class Recovery:
    executors_added: list[str]
    executors_removed: dict[str, str]           # executor id -> reason
    lost_tasks: list[tuple[int, int]]           # (stage id, partition) failed with ExecutorLostFailure
    rerun_ok: list[tuple[int, int]]             # of those, the ones a later attempt finished
    job_results: list[str]


def recovery(events: list[dict], executor_id: str) -> Recovery:
    """What the driver saw of executor ``executor_id``'s death and of the tasks it was running."""
    added = [e["Executor ID"] for e in events if e["Event"] == "SparkListenerExecutorAdded"]
    removed = {e["Executor ID"]: e.get("Removed Reason", "") for e in events
               if e["Event"] == "SparkListenerExecutorRemoved"}
    lost, succeeded = [], set()
    for e in events:
        if e["Event"] != "SparkListenerTaskEnd":
            continue
        info, reason = e["Task Info"], e["Task End Reason"]
        key = (e["Stage ID"], info.get("Partition ID", info["Index"]))
        if reason["Reason"] == "Success":
            succeeded.add(key)
        elif reason["Reason"] == "ExecutorLostFailure" and str(reason.get("Executor ID")) == executor_id:
            lost.append(key)
    jobs = [e["Job Result"]["Result"] for e in events if e["Event"] == "SparkListenerJobEnd"]
    return Recovery(added, removed, lost, [k for k in lost if k in succeeded], jobs)


def python_env_without_retail_ann(target: Path) -> Path:
    """A venv whose site-packages point at this interpreter's (pyspark, numpy, pyarrow, ...) through
    a plain ``.pth`` path line, so the editable install of retail_ann is *not* visible: executors
    running it can only import retail_ann from what spark-submit ships. Returns its tar.gz, laid
    out like a venv-pack archive (the environment at the root)."""
    import sysconfig
    import tarfile

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    purelib = sysconfig.get_paths()["purelib"]
    rel = Path(sysconfig.get_paths()["purelib"]).relative_to(sysconfig.get_paths()["data"])
    (target / rel).mkdir(parents=True, exist_ok=True)
    (target / rel / "_parent_site_packages.pth").write_text(purelib + "\n")
    archive = target.with_name(target.name + ".tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        for child in sorted(target.iterdir()):
            tar.add(child, arcname=child.name)
    return archive
