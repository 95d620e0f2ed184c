"""Reason codes: which input columns pushed a customer's purchase score up, and by how much.

Integrated gradients (Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks") of the
purchase network's logit, from a reference row to the customer's row, computed from the stored
weights in numpy (no TensorFlow on executors). With ``x`` the customer's transformed inputs and
``r`` the reference's, feature ``j`` gets

    (x_j - r_j) * mean over the steps a of  d logit / d x_j  at  r + a (x - r),

the midpoint rule over ``steps`` points of the path. The contributions sum to
``logit(x) - logit(r)`` up to the rule's error (exactly where the path stays in one linear piece
of the ReLU network, e.g. one step for a linear model), so a contribution is on the logit scale:
+0.7 moves the odds by a factor of e^0.7 against the reference customer's.

The reference is the training rows' typical customer: every numeric input at its imputation
value (the training median by default), every categorical at its most frequent level. The
contributions of a source column's transformed columns (its value, indicators, piecewise-linear
bins, one-hot levels) are summed, so a reason names a column of the feature table.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from retail_ann.model import activate, in_blocks
from retail_ann.preprocessing import FeatureSpec
from retail_ann.schemas import reason_columns
from retail_ann.targets import PURCHASE

_SLOPES = {   # d activation / d pre-activation, from the pre-activation z and the activation h
    "relu": lambda z, h: (z > 0).astype(np.float32),
    "linear": lambda z, h: np.ones_like(z),
    "tanh": lambda z, h: 1.0 - h * h,
    "sigmoid": lambda z, h: h * (1.0 - h),
}


def _activations(weights: Mapping[str, np.ndarray]) -> list[str]:
    """The layers' activations of a one-output MLP whose hidden activations have a known slope."""
    activations = [str(a) for a in weights["activations"]]
    if weights[f"W{len(activations) - 1}"].shape[1] != 1:
        raise ValueError("reason codes need a network with one output unit")
    unknown = sorted(set(activations[:-1]) - set(_SLOPES))
    if unknown:
        raise ValueError(f"no gradient for hidden activation {', '.join(unknown)}")
    return activations


def _first_layer_gradients(weights: Mapping[str, np.ndarray], activations: list[str], z0: np.ndarray) -> np.ndarray:
    """d logit / d z0 per row, ``z0`` being the first layer's pre-activation ``x @ W0 + b0`` (the
    logit itself for a network without hidden layers)."""
    last = len(activations) - 1
    if last == 0:
        return np.ones_like(z0)
    slopes, z = [], z0
    for i, act in enumerate(activations[:-1]):
        if i:
            z = h @ weights[f"W{i}"]
            z += weights[f"b{i}"]
        h = activate(z.copy(), act)
        slopes.append(_SLOPES[act](z, h))
    g = np.broadcast_to(weights[f"W{last}"][:, 0], h.shape)
    for i in range(last - 1, 0, -1):
        g = (g * slopes[i]) @ weights[f"W{i}"].T
    return g * slopes[0]


def logit_gradients(weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """d(output pre-activation)/dx of a one-output MLP, per row: ``(n, inputs)`` float32. The
    output's own activation (the sigmoid of a purchase network) is left out: the gradient is of
    the logit. Computed in ``FORWARD_ROWS`` blocks, so a row's gradient does not depend on its
    batch (as ``forward``'s outputs do not)."""
    activations = _activations(weights)
    w0, b0 = weights["W0"], weights["b0"]
    return in_blocks(lambda h: _first_layer_gradients(weights, activations, h @ w0 + b0) @ w0.T,
                     np.asarray(x, dtype=np.float32))


def integrated_gradients(weights: Mapping[str, np.ndarray], x: np.ndarray, reference: np.ndarray,
                         steps: int) -> np.ndarray:
    """Each transformed input's contribution to ``logit(x) - logit(reference)``: ``(n, inputs)``.

    The first layer is linear in the input, so along the path its pre-activation is
    ``z_ref + a (x - r) W0`` (one product a row, not one a step), and the steps' gradients are
    summed at that layer before the one product with ``W0``'s transpose."""
    activations = _activations(weights)
    w0, b0 = weights["W0"], weights["b0"]
    reference = np.asarray(reference, dtype=np.float32)
    z_ref = reference @ w0 + b0

    def block(rows: np.ndarray) -> np.ndarray:
        delta = rows - reference
        dz = delta @ w0
        total = np.zeros_like(dz)
        for k in range(steps):
            total += _first_layer_gradients(weights, activations, z_ref + np.float32((k + 0.5) / steps) * dz)
        out = total @ w0.T
        out *= delta
        out /= np.float32(steps)
        return out

    return in_blocks(block, np.asarray(x, dtype=np.float32))


class Explainer:
    """Reason codes of one purchase network: the reference row, and the source column each
    transformed column folds into."""

    def __init__(self, spec: FeatureSpec, weights: Mapping[str, np.ndarray], steps: int) -> None:
        self.weights, self.steps = weights, steps
        self.reference = spec.transform(spec.reference_row())[0]
        blocks = spec.input_blocks
        self.sources = list(blocks)
        self.fold = np.zeros((spec.n_features, len(blocks)), dtype=np.float32)
        for j, positions in enumerate(blocks.values()):
            self.fold[positions, j] = 1.0

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """``(n, sources)``: each source column's contribution on the logit scale."""
        return integrated_gradients(self.weights, x, self.reference, self.steps) @ self.fold

    def top(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` source columns with the largest contributions per row, largest first:
        (names ``(n, k)`` as objects, contributions ``(n, k)`` float64)."""
        c = self.contributions(x)
        k = min(k, c.shape[1])
        idx = np.argpartition(-c, k - 1, axis=1)[:, :k] if k < c.shape[1] else np.tile(np.arange(k), (len(c), 1))
        picked = np.take_along_axis(c, idx, axis=1)
        order = np.argsort(-picked, axis=1, kind="stable")
        idx, picked = np.take_along_axis(idx, order, axis=1), np.take_along_axis(picked, order, axis=1)
        return np.asarray(self.sources, dtype=object)[idx], picked.astype(np.float64)


@dataclass(frozen=True)
class ReasonCodes:
    """What ``score --explain K`` asks for: ``k`` reasons a row, ``steps`` integration steps."""

    k: int
    steps: int

    def check(self, spec: FeatureSpec, tasks: tuple[str, ...]) -> None:
        """Raise ``ValueError`` when the model cannot give these reason codes."""
        if PURCHASE not in tasks:
            raise ValueError("reason codes explain the purchase score, and this model has no purchase network")
        if self.k > len(spec.input_blocks):
            raise ValueError(f"--explain {self.k} asks for more reasons than the model's {len(spec.input_blocks)} "
                             "input columns")

    def columns(self, names: np.ndarray, contributions: np.ndarray) -> dict[str, pa.Array]:
        """The output columns ``reason_i`` and ``reason_i_contribution`` of ``Explainer.top``'s result."""
        out = {}
        for i, (name, value) in enumerate(reason_columns(self.k)):
            out[name] = pa.array(names[:, i], pa.string())
            out[value] = pa.array(contributions[:, i], pa.float64())
        return out
