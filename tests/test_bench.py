"""The benches run from a checkout, at a tiny size (their figures live in bench/RESULTS.md, not here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

pytestmark = pytest.mark.slow


def tiny_run(script: str, tmp_path: Path, timeout: int):
    """``bench/<script> --tiny`` from the checkout, its outputs under ``tmp_path``: (the finished
    process, its ``--json`` results)."""
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), "--tiny", "--out", str(tmp_path / "q"),
                           "--json", str(out)], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.mark.skipif(not (SHARED / "CDNOW_master.txt.gz").exists(), reason="../shared/data is not here")
def test_quality_bench_runs_every_data_set_through_the_jobs(tmp_path):
    proc, results = tiny_run("quality.py", tmp_path, 1200)
    assert [(r["data"], r["split"]) for r in results] == [
        ("Online Shoppers", "stratified"), ("Online Shoppers", "out_of_time"),
        ("CDNOW", "customers 80:20 by id hash"), ("Online Retail sample", "customers 80:20 by id hash")]
    for r in results:
        auc = r["figures"]["purchase|ANN (retail-ann)|roc_auc"]
        assert 0 <= auc["value"] <= 1 and auc["ci"][0] <= auc["value"] <= auc["ci"][1]
        assert any(k.startswith("purchase|ANN - LightGBM|") for k in r["figures"])
    cdnow = results[2]["figures"]
    assert {"spend|BG/NBD + Gamma-Gamma|r2", "spend|ANN - BG/NBD + Gamma-Gamma|gini", "purchase|BG/NBD|brier"} <= set(cdnow)
    assert "| CDNOW | customers 80:20 by id hash" in proc.stdout


@pytest.mark.skipif(not (SHARED / "CDNOW_master.txt.gz").exists(), reason="../shared/data is not here")
def test_spend_selection_bench_splits_the_quality_tables_training_customers(tmp_path):
    proc, result = tiny_run("spend_target.py", tmp_path, 900)
    (split,) = result["splits"]
    assert split["train_rows"] + split["test_rows"] == result["customers"] < 2000   # the hash's test fifth left out
    assert -1 < split["r2"] <= 1 and -1 < split["gamma_gamma_r2"] <= 1 and 0.5 < split["purchase_roc_auc"] <= 1
    assert "mean of 1" in proc.stdout


def test_features_bench_checks_duckdb_against_the_job_at_a_tiny_size(tmp_path):
    """bench/features.py exits 0 only when DuckDB's table, reject counts and data ranges equal the
    features job's, bad rows included."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "features.py"), "--tiny", "--no-append",
                           "--out", str(tmp_path / "f")], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| 500 x 60 |" in proc.stdout and "equal" in proc.stdout


def test_score_bench_checks_every_scorer_against_the_job_at_a_tiny_size(tmp_path):
    """bench/score.py exits 0 only when every peer's predictions join 1:1 with score's and match."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "score.py"), "--tiny", "--no-append",
                           "--out", str(tmp_path / "s")], capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for scorer in ("score", "score-arrow", "passthrough", "predict_batch_udf", "plain"):
        assert f"| {scorer} |" in proc.stdout
