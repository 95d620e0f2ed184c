"""A trained model directory: written by training (``write_artifact``), read back for scoring with
numpy only (``load_artifact``: no TensorFlow, no Keras).

Layout (``write_artifact`` writes it atomically): ``feature_spec.json``, ``weights_<name>.npz``
and ``model_<name>.keras`` per network, ``metrics.json``, ``model_card.md``, ``report.html`` with
its PNGs, and ``VERSION`` (16 hex digits of sha256 over the spec and every weight array;
``load_artifact`` refuses a directory whose content does not match it).

Networks: ``purchase`` (sigmoid), ``spend`` and, for a two-stage spend model trained without a
purchase task, ``spend_gate``. ``spec.targets`` records the tasks, the purchase decision threshold
and how the spend network's output maps back to currency (``targets.spend_from_outputs``).

One path turns transformed features into predictions, whoever computes the networks' outputs::

    artifact = load_artifact(model_dir)
    x = artifact.spec.transform(batch)            # pandas or Arrow batch -> float32
    artifact.predict_matrix(x)                    # numpy forward pass from the .npz weights
    artifact.predict_matrix(x, run=keras_run)     # run(name, x) -> that network's outputs
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from retail_ann.errors import InputError
from retail_ann.model import forward, load_weights_npz, n_inputs, save_weights_npz
from retail_ann.preprocessing import FeatureSpec
from retail_ann.targets import NETWORKS, PURCHASE, NetworkRunner, predictions

SPEC_FILE = "feature_spec.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "model_card.md"
VERSION_FILE = "VERSION"
CHECKSUM_FILE = "CHECKSUMS.json"   # sha256 of every file scoring reads, the .keras files included

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


def write_artifact(out_dir: str, spec_json: str, models: dict, weights: dict, metrics: dict,
                   context: dict, report: bool = True) -> Path:
    """Write the model directory ``out_dir`` (a local path): the spec, each network's ``.keras``
    model (Keras objects in ``models``) and ``.npz`` weights, ``metrics.json``, the model card and
    (``report``) ``report.html``, ``CHECKSUMS.json`` and ``VERSION`` = ``context["version"]``; built
    in a temporary directory beside it and swapped in whole. Returns the directory's path."""
    from retail_ann.io import is_local

    if not is_local(str(out_dir)):
        raise InputError(f"the model directory must be a local path, not {out_dir}")
    out = Path(str(out_dir).removeprefix("file://").removeprefix("file:")).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"model directory {out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / SPEC_FILE).write_text(spec_json)
        for name, model in models.items():
            model.save(tmp / f"model_{name}.keras")
            save_weights_npz(weights[name], tmp / f"weights_{name}.npz")
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=False, default=_json_default))
        from retail_ann import report as reports

        (tmp / CARD_FILE).write_text(reports.model_card(context))
        if report:
            reports.write_report(tmp, context)
        scored_files = [SPEC_FILE, *[f"{kind}_{name}.{ext}" for name in models
                                     for kind, ext in (("model", "keras"), ("weights", "npz"))]]
        (tmp / CHECKSUM_FILE).write_text(json.dumps(file_checksums(tmp, scored_files), indent=1) + "\n")
        (tmp / VERSION_FILE).write_text(context["version"] + "\n")
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``; an existing ``out`` is swapped out first, then removed."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        try:
            os.rename(new, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, out)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
