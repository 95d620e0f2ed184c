"""A trained model directory, read back for scoring with numpy only (no TensorFlow, no Keras).

Layout (``retail_ann.training`` writes it atomically): ``feature_spec.json``, ``weights_<name>.npz``
and ``model_<name>.keras`` per network, ``metrics.json``, ``model_card.md``, ``report.html`` with
its PNGs, and ``VERSION`` (16 hex digits of sha256 over the spec and every weight array;
``load_artifact`` refuses a directory whose content does not match it).

Networks: ``purchase`` (sigmoid), ``spend`` and, for a two-stage spend model trained without a
purchase task, ``spend_gate``. ``spec.targets`` records the tasks, the purchase decision threshold
and how the spend network's output maps back to currency (``spend_from_outputs``).

One path turns transformed features into predictions, whoever computes the networks' outputs::

    artifact = load_artifact(model_dir)
    x = artifact.spec.transform(batch)            # pandas or Arrow batch -> float32
    artifact.predict_matrix(x)                    # numpy forward pass from the .npz weights
    artifact.predict_matrix(x, run=keras_run)     # run(name, x) -> that network's outputs
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from retail_ann.errors import InputError
from retail_ann.model import forward, load_weights_npz, n_inputs, ziln_mean
from retail_ann.preprocessing import FeatureSpec
from retail_ann.schemas import PREDICTED_SPEND, PURCHASE_PROBABILITY, WILL_PURCHASE

PURCHASE = "purchase"
SPEND = "spend"
SPEND_GATE = "spend_gate"
TASKS = (PURCHASE, SPEND)
NETWORKS = (PURCHASE, SPEND, SPEND_GATE)

SPEC_FILE = "feature_spec.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "model_card.md"
VERSION_FILE = "VERSION"
CHECKSUM_FILE = "CHECKSUMS.json"   # sha256 of every file scoring reads, the .keras files included

NetworkRunner = Callable[[str, np.ndarray], np.ndarray]
"""``run(network_name, x) -> outputs``: one network's output for transformed rows ``x``."""


@dataclass
class Artifact:
    """A trained model directory loaded for scoring (numpy only)."""

    path: str
    spec: FeatureSpec
    weights: dict[str, dict[str, np.ndarray]]
    version: str
    checked: frozenset[str] = frozenset()   # files whose checksum load_artifact verified

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.spec.targets.get("tasks", []))

    @property
    def threshold(self) -> float | None:
        info = self.spec.targets.get(PURCHASE)
        return None if info is None else float(info["threshold"])

    def numpy_runner(self) -> NetworkRunner:
        """The numpy forward pass over this artifact's weights."""
        return lambda name, x: forward(self.weights[name], x)

    def predict_matrix(self, x: np.ndarray, run: NetworkRunner | None = None) -> dict[str, np.ndarray]:
        """Every task's predictions for transformed features ``x`` (numpy engine unless ``run``)."""
        return predictions(self.spec.targets, x, run or self.numpy_runner(), self.tasks)

    def predict(self, batch) -> dict[str, np.ndarray]:
        """Transform a pandas/Arrow batch and predict every task the model has."""
        return self.predict_matrix(self.spec.transform(batch))


def predictions(
    targets: Mapping[str, Any], x: np.ndarray, run: NetworkRunner, tasks: Iterable[str],
) -> dict[str, np.ndarray]:
    """``purchase_probability`` and ``will_purchase`` (the stored threshold) and/or
    ``predicted_spend`` (currency, >= 0) for ``tasks``; ``targets`` is ``spec.targets``.
    A two-stage spend model reuses the purchase probability when the purchase network is its gate."""
    tasks = tuple(tasks)
    out: dict[str, np.ndarray] = {}
    p = None
    if PURCHASE in tasks:
        p = np.asarray(run(PURCHASE, x)).reshape(-1)
        out[PURCHASE_PROBABILITY] = p
        out[WILL_PURCHASE] = (p >= float(targets[PURCHASE]["threshold"])).astype(np.int32)
    if SPEND in tasks:
        info = targets[SPEND]
        gate = None
        if info["target"] == "two_stage":
            gate = p if info["gate"] == PURCHASE and p is not None else np.asarray(run(info["gate"], x)).reshape(-1)
        output = np.asarray(run(SPEND, x))
        out[PREDICTED_SPEND] = spend_from_outputs(info, output if info["target"] == "ziln" else output.reshape(-1), gate)
    return out


def spend_from_outputs(spend_info: Mapping[str, Any], output: np.ndarray,
                       gate_probability: np.ndarray | None = None) -> np.ndarray:
    """Expected spend from the spend network's output (and, two-stage, the gate probability); a
    ziln network's output is ``(n, 3)``."""
    out = np.asarray(output, dtype=np.float64)
    center, scale = float(spend_info["center"]), float(spend_info["scale"])
    target = spend_info["target"]
    if target == "raw":
        return np.maximum(center + scale * out, 0.0)
    if target == "log1p":
        t = np.minimum(center + scale * out, 50.0)
        return np.maximum(np.exp(t) * float(spend_info["smearing"]) - 1.0, 0.0)
    if target == "ziln":
        return scale * ziln_mean(out)
    if target == "two_stage":
        if gate_probability is None:
            raise ValueError("a two-stage spend model needs the gate probability")
        return np.asarray(gate_probability, dtype=np.float64) * np.maximum(center + scale * out, 0.0)
    raise ValueError(f"unknown spend target {target!r}")


def load_artifact(model_dir: str | Path) -> Artifact:
    """Load a model directory written by ``train_table``; checks its VERSION against its content."""
    p = Path(str(model_dir).removeprefix("file://").removeprefix("file:"))
    if not (p / SPEC_FILE).is_file():
        raise InputError(f"not a model directory (no {SPEC_FILE}): {model_dir}")
    spec_text = (p / SPEC_FILE).read_text()
    try:
        spec = FeatureSpec.from_json(spec_text)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{p / SPEC_FILE} is not a valid feature spec: {e}") from None
    weights = {}
    for name in NETWORKS:
        f = p / f"weights_{name}.npz"
        if f.is_file():
            try:
                weights[name] = load_weights_npz(f)
            except (ValueError, OSError, zipfile.BadZipFile) as e:
                raise InputError(f"{f} is not a valid weights file: {e}") from None
            if n_inputs(weights[name]) != spec.n_features:
                raise InputError(f"{f} expects {n_inputs(weights[name])} inputs but the spec makes {spec.n_features}")
    for task in spec.targets.get("tasks", []):
        if task not in weights:
            raise InputError(f"model directory {p} lacks weights_{task}.npz")
    version = (p / VERSION_FILE).read_text().strip() if (p / VERSION_FILE).is_file() else ""
    expected = content_hash(spec_text, weights)
    if version != expected:
        raise InputError(f"model directory {p}: VERSION {version or '(missing)'} does not match its content ({expected})")
    return Artifact(path=str(p), spec=spec, weights=weights, version=version, checked=_verify_checksums(p))


def file_checksums(directory: Path, names: Iterable[str]) -> dict[str, str]:
    """sha256 of each named file of ``directory``."""
    return {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in sorted(names)}


def _verify_checksums(directory: Path) -> frozenset[str]:
    """The files ``CHECKSUMS.json`` lists and the directory holds, each checked; a file that differs
    is an ``InputError`` (a ``.keras`` copied over another is found here: VERSION covers the spec and
    weights only). A listed file may be absent (``.keras`` files left out of a numpy-only
    deployment): it is not in the result, so the keras engine refuses it. A directory without
    ``CHECKSUMS.json`` (written before it existed) has nothing checked."""
    path = directory / CHECKSUM_FILE
    if not path.is_file():
        return frozenset()
    try:
        listed = json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from None
    present = [name for name in listed if (directory / name).is_file()]
    for name, digest in file_checksums(directory, present).items():
        if digest != listed[name]:
            raise InputError(f"model directory {directory}: {name} is changed since training (its checksum in "
                             "CHECKSUMS.json differs); retrain, or restore the file")
    return frozenset(present)


def content_hash(spec_json: str, weights: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """16 hex digits of sha256 over the spec text and every weight array (name, dtype, shape, bytes)."""
    h = hashlib.sha256(spec_json.encode("utf-8"))
    for name in sorted(weights):
        for key in sorted(weights[name]):
            a = np.ascontiguousarray(weights[name][key])
            h.update(f"{name}/{key}/{a.dtype.str}/{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]
