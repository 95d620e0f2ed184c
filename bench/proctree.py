"""What a command's whole process tree costs: CPU-seconds, wall, peak memory, load around it.

A pyspark driver does not wait for the JVM it starts, so ``getrusage`` of the children alone misses
the JVM and Spark's Python workers. ``become_subreaper`` (Linux ``prctl``) makes such orphans
children of this process; ``run_tree`` then reaps every process of the tree (``os.wait4``) and adds
up their user + system time.
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


def become_subreaper() -> None:
    """Make orphaned descendants (the JVM outliving the pyspark driver) children of this process."""
    if not sys.platform.startswith("linux") or \
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise RunFailed("needs Linux prctl(PR_SET_CHILD_SUBREAPER) to count the JVM's CPU time")


def run_tree(cmd: list[str], log: Path, cwd: Path = ROOT) -> Run:
    """Run ``cmd`` (stdout and stderr to ``log``, the repository on PYTHONPATH) and reap it and every
    descendant it leaves behind; ``RunFailed`` with the log's tail when it exits non-zero."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    cpu, peak_kb, reaped, code = 0.0, 0, 0, None
    load_before, started = os.getloadavg()[0], time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
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
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RunFailed(f"{' '.join(cmd[:4])} ... exited {code}; the end of {log}:\n{tail}")
    return Run(round(wall, 2), round(cpu, 2), round(peak_kb / 1024, 1), reaped, load_before, os.getloadavg()[0])
