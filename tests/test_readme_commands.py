"""The commands as the README shows them, each in its own process as an operator runs it: what
reaches stderr (retail-ann's lines and Spark's WARN ones in one format, no Spark INFO, no stack
trace), the summary on stdout, and for a bad input the error as the last line of stderr."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("retail-ann")
RETAIL_ANN = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "retail_ann.cli"]
LOG_LINE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARN|WARNING|ERROR) (?P<logger>[\w.$]+): ")
# The JVM itself prints this when Spark adds the incubating Vector API module; no logger carries it.
JVM_NOTICE = "WARNING: Using incubator modules: jdk.incubator.vector"

pytestmark = pytest.mark.slow


def run(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HADOOP_CONF_DIR", "SPARK_MASTER")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def unexpected_stderr(stderr: str, error_line: bool = False) -> list[str]:
    """stderr lines that are neither a log line of ours, a Spark WARN/ERROR in our format, the JVM
    notice nor (last, when ``error_line``) the one-line error."""
    lines = stderr.strip().splitlines()
    if error_line:
        lines = lines[:-1]
    odd = []
    for line in lines:
        m = LOG_LINE.match(line)
        ours = m and m.group("logger").startswith("retail_ann")
        if line == JVM_NOTICE or (m and (ours or m.group(1) in ("WARN", "WARNING", "ERROR"))):
            continue
        odd.append(line)
    return odd


def test_demo_and_spark_submit_log_quietly_and_a_bad_input_ends_stderr_with_its_error(tmp_path):
    demo = run([*RETAIL_ANN, "demo", "--out", str(tmp_path / "demo"), "--customers", "400", "--epochs", "2"])
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert not unexpected_stderr(demo.stderr), demo.stderr
    assert "stage=features.aggregate" in demo.stderr and "purchase: 2 of at most 2 epochs" in demo.stderr
    assert demo.stdout.startswith("retail-ann demo: ") and "report.html" in demo.stdout
    assert (tmp_path / "demo" / "model" / "report.html").is_file()

    # The README's spark-submit form: the same quiet stderr, the summary on stdout.
    submit = run(["./spark-submit.sh", "generate", "--", "--out", str(tmp_path / "shop"), "--customers", "100",
                  "--days", "10"])
    assert submit.returncode == 0, submit.stderr[-3000:]
    assert not unexpected_stderr(submit.stderr), submit.stderr
    assert submit.stdout.startswith("retail-ann generate: wrote clickstream ")

    # A table that is not a feature table, found only once Spark has read it: exit 2, the error last.
    wrong = run([*RETAIL_ANN, "score", "--features", str(tmp_path / "demo" / "raw" / "transactions"),
                 "--model", str(tmp_path / "demo" / "model"), "--out", str(tmp_path / "predictions")])
    assert wrong.returncode == 2, wrong.stderr[-3000:]
    last = wrong.stderr.strip().splitlines()[-1]
    assert last.startswith("retail-ann score: error: feature table does not fit model "), wrong.stderr
    assert re.search(r"(\d+) of its \1 input columns missing \(age, [^)]*, \.\.\.\)$", last) and len(last) < 400
    assert not unexpected_stderr(wrong.stderr, error_line=True), wrong.stderr
    assert wrong.stdout == ""


def test_a_misspelled_flag_is_named_in_a_fresh_process_without_starting_spark(tmp_path):
    bad = run([*RETAIL_ANN, "features", "--transactons", "t", "--as-of", "2024-10-01", "--out", str(tmp_path)])
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "retail-ann features: error: unrecognized argument --transactons (did you mean --transactions?)")
    assert "spark session" not in bad.stderr
