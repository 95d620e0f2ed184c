"""What a command's whole process tree costs: CPU-seconds, wall, peak memory, load around it.

A pyspark driver does not wait for the JVM it starts, so ``getrusage`` of the children alone misses
the JVM. ``become_subreaper`` (Linux ``prctl``) makes such orphans children of this process, and
``run_tree`` reaps every process of the tree (``os.wait4``). That still misses Spark's Python
workers: pyspark's daemon sets ``SIGCHLD`` to ``SIG_IGN``, so the kernel reaps its workers itself
and their CPU time is added to no one (measured here: 5.4 of 24 CPU-seconds of a ``score`` run, 13
of 31 with ``--explain 3``). So ``run_tree`` puts the command in a cgroup of its own (v1
``cpuacct`` or v2, where this machine lets it make one) and takes the CPU time the cgroup was
charged, which every process of the tree pays into however it ends; ``Run.cpu_source`` says which
measure was used (``cgroup``, else ``wait4``).
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36


class RunFailed(Exception):
    """The command exited non-zero (the message holds the end of its log), or the tree cannot be measured."""


@dataclass
class Run:
    """What one process tree cost."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float     # the largest single process's, not a sum over the tree
    processes: int
    load_before: float     # one-minute load average
    load_after: float
    cpu_source: str = "wait4"   # cgroup: what the tree's cgroup was charged; wait4: the reaped processes' rusage


def become_subreaper() -> None:
    """Make orphaned descendants (the JVM outliving the pyspark driver) children of this process."""
    if not sys.platform.startswith("linux") or \
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise RunFailed("needs Linux prctl(PR_SET_CHILD_SUBREAPER) to count the JVM's CPU time")


CGROUP_ROOTS = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


class _CpuCgroup:
    """A fresh cgroup that counts CPU time: v1 ``cpuacct.usage`` (ns) or v2 ``cpu.stat`` usage_usec."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def make(cls) -> "_CpuCgroup | None":
        for root in CGROUP_ROOTS:
            if not ((root / "cpuacct.usage").exists() or (root / "cpu.stat").exists()):
                continue
            path = root / f"retail-ann-bench-{os.getpid()}-{time.monotonic_ns()}"
            try:
                path.mkdir()
            except OSError:
                continue
            return cls(path)
        return None

    def join(self) -> None:
        """Move the calling process in (``preexec_fn``: the command and all it starts are charged here)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def cpu_seconds(self) -> float:
        if (self.path / "cpuacct.usage").exists():
            return int((self.path / "cpuacct.usage").read_text()) / 1e9
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6

    def remove(self) -> None:
        for _ in range(50):   # the last processes may still be leaving
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def run_tree(cmd: list[str], log: Path, cwd: Path = ROOT) -> Run:
    """Run ``cmd`` (stdout and stderr to ``log``, the repository on PYTHONPATH) and reap it and every
    descendant it leaves behind; ``RunFailed`` with the log's tail when it exits non-zero. The CPU
    time is the tree's cgroup's where one can be made (module docstring)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    cpu, peak_kb, reaped, code = 0.0, 0, 0, None
    group = _CpuCgroup.make()
    load_before, started = os.getloadavg()[0], time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                                preexec_fn=group.join if group else None)
        while True:   # until no child is left: the command, then what it orphaned (reparented here)
            try:
                pid, status, usage = os.wait4(-1, 0)
            except ChildProcessError:
                break
            cpu += usage.ru_utime + usage.ru_stime
            peak_kb = max(peak_kb, usage.ru_maxrss)
            reaped += 1
            if pid == proc.pid:
                code = proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    source = "wait4"
    if group is not None:
        cpu, source = group.cpu_seconds(), "cgroup"
        group.remove()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RunFailed(f"{' '.join(cmd[:4])} ... exited {code}; the end of {log}:\n{tail}")
    return Run(round(wall, 2), round(cpu, 2), round(peak_kb / 1024, 1), reaped, load_before, os.getloadavg()[0],
               source)
