"""The MLPs: building them with Keras (training only) and running them with numpy (scoring).

Keras and TensorFlow are imported inside the functions that need them, never at module level, so
``import retail_ann.model``, ``load_weights_npz`` and ``forward`` work on executors without
TensorFlow installed.

Weights format (a dict, saved as ``.npz``): ``W0, b0, W1, b1, ...`` for the Dense layers in order
(``W`` is ``(inputs, units)``) and ``activations``, an array of strings (``relu``, ``sigmoid``,
``linear``) one per Dense layer. Dropout is the identity at inference, so it leaves no trace here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

OUTPUTS = ("sigmoid", "linear", "exponential", "ziln")
ZILN_UNITS = 3   # a ziln output: (logit of P(spend > 0), mu, softplus^-1 sigma) of a lognormal spend
ACTIVATIONS = ("relu", "sigmoid", "linear", "tanh", "exponential")


def build_mlp(
    n_inputs: int,
    hidden_units: Sequence[int] = (64, 32),
    dropout: float = 0.3,
    output: str = "sigmoid",
    learning_rate: float = 1e-3,
    l2: float = 0.0,
    output_bias: float | Sequence[float] | None = None,
    seed: int | None = None,
    members: int = 1,
    ema_momentum: float = 0.0,
):
    """A Keras MLP: Dense ReLU layers (each followed by Dropout when ``dropout`` > 0), one output unit.

    ``output="sigmoid"`` compiles with binary cross-entropy and tracks AUC (logged as ``auc``);
    ``"linear"`` with mean squared error; ``"exponential"`` (a log link: positive outputs) with the
    Poisson deviance, which fits the conditional mean of a skewed non-negative target without bias;
    ``"ziln"`` has three linear output units and the zero-inflated lognormal loss (``ziln_loss``).
    ``output_bias`` initialises the output bias (for a sigmoid, the log-odds of the positive
    rate helps the first epochs; for ziln, one value per unit). Adam optimiser.

    ``members`` > 1 builds that many independent MLPs on the same input in one model (a deep
    ensemble: layers ``m<k>_dense_<i>``, outputs ``output_<k>``, each with its own loss, so one
    ``fit`` trains them all on the same batches from different initialisations and dropout masks).
    ``merge_members`` turns the trained model into one plain MLP.

    ``ema_momentum`` > 0 makes Adam keep an exponential moving average of the weights (Polyak
    averaging); ``training`` validates and keeps the averaged weights.
    """
    import keras

    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if not hidden_units:
        raise ValueError("hidden_units must name at least one layer")
    if members < 1:
        raise ValueError("members must be >= 1")

    def seeded(offset: int) -> int | None:
        return None if seed is None else seed + offset

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    out_units, out_activation = (ZILN_UNITS, "linear") if output == "ziln" else (1, output)
    bias_init = "zeros" if output_bias is None else keras.initializers.Constant(np.broadcast_to(
        np.asarray(output_bias, dtype=np.float32), (out_units,)).copy())
    inputs = keras.Input(shape=(n_inputs,), name="features")
    outputs = []
    for k in range(members):
        prefix, base = ("", 0) if members == 1 else (f"m{k}_", 1000 * k)
        h = inputs
        for i, units in enumerate(hidden_units):
            h = keras.layers.Dense(int(units), activation="relu", kernel_regularizer=reg, name=f"{prefix}dense_{i}",
                                   kernel_initializer=keras.initializers.HeUniform(seed=seeded(base + i)))(h)
            if dropout > 0:
                h = keras.layers.Dropout(dropout, seed=seeded(base + 100 + i), name=f"{prefix}dropout_{i}")(h)
        outputs.append(keras.layers.Dense(out_units, activation=out_activation, bias_initializer=bias_init,
                                          kernel_initializer=keras.initializers.GlorotUniform(seed=seeded(base + 99)),
                                          name="output" if members == 1 else f"output_{k}")(h))
    model = keras.Model(inputs, outputs[0] if members == 1 else outputs, name=f"mlp_{output}")
    loss, metrics = {"sigmoid": ("binary_crossentropy", [keras.metrics.AUC(name="auc")]),
                     "exponential": ("poisson", []), "linear": ("mse", []), "ziln": (ziln_loss, [])}[output]
    if members > 1:   # per-output metric names would change the logged keys; the loss is enough
        loss, metrics = [loss] * members, None
    ema = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum > 0 else {}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate, **ema), loss=loss, metrics=metrics)
    return model


def ziln_loss(y_true, y_pred):
    """Zero-inflated lognormal negative log-likelihood per row (Wang, Liu & Miao 2019): binary
    cross-entropy of ``spend > 0`` on the first output's logit, plus for buyers the lognormal
    likelihood of their spend with mean ``mu`` (second output) and ``sigma = softplus(third)``
    of its log. Its expected value is ``ziln_mean``."""
    from keras import ops

    y = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1,))
    logit, mu, sigma = y_pred[:, 0], y_pred[:, 1], _ziln_sigma(y_pred[:, 2], ops)
    buyer = ops.cast(y > 0, y_pred.dtype)
    log_y = ops.log(buyer * y + (1.0 - buyer))
    bce = ops.maximum(logit, 0.0) - logit * buyer + ops.log1p(ops.exp(-ops.abs(logit)))
    nll = ops.log(sigma) + 0.5 * ops.square((log_y - mu) / sigma) + 0.5 * float(np.log(2 * np.pi))
    return bce + buyer * nll


def ziln_mean(outputs: np.ndarray) -> np.ndarray:
    """E[spend] of ziln outputs ``(n, 3)``: P(spend > 0) x exp(mu + sigma^2 / 2), in float64."""
    z = np.asarray(outputs, dtype=np.float64)
    sigma = _ziln_sigma(z[:, 2], np)
    return sigmoid(z[:, 0]) * np.exp(np.minimum(z[:, 1] + 0.5 * sigma * sigma, 80.0))


def _ziln_sigma(raw, ops):
    """sigma = softplus(raw), kept above 0.01 (the same formula in Keras and numpy)."""
    return ops.maximum(ops.logaddexp(raw, 0.0), 0.01)


def member_weights(model, members: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The weights (``export_weights`` format) of one plain MLP equal to ``members`` (default: all)
    of an ensemble built by ``build_mlp(..., members=K)``; a single-member model's own weights.

    The members' hidden layers sit side by side (the first layer's kernels concatenated, deeper
    ones block-diagonal), and the output unit takes the mean of the members' pre-activations: for
    a sigmoid the average logit, for a linear output the mean, for an exponential (log-link)
    output the geometric mean.
    """
    from scipy.linalg import block_diag

    if len(model.outputs) == 1:
        return export_weights(model)
    chosen = list(range(len(model.outputs))) if members is None else list(members)
    if not chosen or not all(0 <= k < len(model.outputs) for k in chosen):
        raise ValueError(f"members must name some of the model's {len(model.outputs)} members, not {members!r}")
    by_name = {layer.name: layer for layer in model.layers}
    n_hidden = sum(1 for name in by_name if name.startswith("m0_dense_"))
    weights: dict[str, np.ndarray] = {}
    for i in range(n_hidden):
        parts = [by_name[f"m{k}_dense_{i}"].get_weights() for k in chosen]
        kernels = [w for w, _ in parts]
        weights[f"W{i}"] = np.concatenate(kernels, axis=1) if i == 0 else block_diag(*kernels)
        weights[f"b{i}"] = np.concatenate([b for _, b in parts])
    outputs = output_layers(model)
    outs = [outputs[k].get_weights() for k in chosen]
    weights[f"W{n_hidden}"] = np.concatenate([w for w, _ in outs], axis=0) / len(chosen)
    weights[f"b{n_hidden}"] = np.mean([b for _, b in outs], axis=0)
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    weights["activations"] = np.array(["relu"] * n_hidden + [activation_name(outputs[0])], dtype=np.str_)
    return weights


def output_layers(model) -> list:
    """The output Dense layer of each member of a model built by ``build_mlp``, in member order."""
    by_name = {layer.name: layer for layer in model.layers}
    if len(model.outputs) == 1:
        return [by_name["output"]]
    return [by_name[f"output_{k}"] for k in range(len(model.outputs))]


def merge_members(model):
    """One plain Keras MLP equal to the ensemble ``model`` built by ``build_mlp(..., members=K)``
    (``member_weights`` of all members; a single-member model is returned as it is). It exports,
    saves and scores like any single MLP."""
    if len(model.outputs) == 1:
        return model
    weights = member_weights(model)
    by_name = {layer.name: layer for layer in model.layers}
    n_hidden = len(weights["activations"]) - 1
    dropout = by_name["m0_dropout_0"].rate if "m0_dropout_0" in by_name else 0.0
    units = [int(weights[f"b{i}"].shape[0]) for i in range(n_hidden)]
    merged = build_mlp(int(weights["W0"].shape[0]), units, dropout, model.name.removeprefix("mlp_"),
                       learning_rate=float(model.optimizer.learning_rate.numpy()))
    for i in range(n_hidden + 1):
        merged.get_layer(f"dense_{i}" if i < n_hidden else "output").set_weights([weights[f"W{i}"], weights[f"b{i}"]])
    # An untrained model saves an unbuilt optimizer, and loading it back warns; build it.
    merged.optimizer.build(merged.trainable_variables)
    return merged


def export_weights(model) -> dict[str, np.ndarray]:
    """Dense kernels, biases and activation names of a Keras MLP, as plain numpy arrays."""
    import keras

    weights: dict[str, np.ndarray] = {}
    activations = []
    i = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            name = activation_name(layer)
            if name not in ACTIVATIONS:
                raise ValueError(f"layer {layer.name}: activation {name!r} has no numpy forward")
            weights[f"W{i}"] = np.asarray(kernel, dtype=np.float32)
            weights[f"b{i}"] = np.asarray(bias, dtype=np.float32)
            activations.append(name)
            i += 1
        elif not isinstance(layer, (keras.layers.Dropout, keras.layers.InputLayer)):
            raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has no numpy forward")
    weights["activations"] = np.array(activations, dtype=np.str_)
    return weights


def activation_name(layer) -> str:
    """The name of a Keras layer's activation (``relu``, ``sigmoid``, ...)."""
    import keras

    act = keras.activations.serialize(layer.activation)
    return act if isinstance(act, str) else act.get("config", {}).get("name", str(act))


def save_weights_npz(weights: Mapping[str, np.ndarray], path: str | Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **weights)


def load_weights_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Weights written by ``save_weights_npz`` (no pickles: safe to load)."""
    with np.load(path, allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    _check_weights(weights)
    return weights


def _check_weights(weights: Mapping[str, np.ndarray]) -> None:
    if "activations" not in weights:
        raise ValueError("weights lack 'activations'")
    prev = None
    for i, act in enumerate(weights["activations"]):
        if str(act) not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r} in layer {i}")
        W, b = weights.get(f"W{i}"), weights.get(f"b{i}")
        if W is None or b is None or W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"weights of layer {i} are missing or mis-shaped")
        if prev is not None and W.shape[0] != prev:
            raise ValueError(f"layer {i} expects {W.shape[0]} inputs but layer {i - 1} gives {prev}")
        prev = W.shape[1]


def n_inputs(weights: Mapping[str, np.ndarray]) -> int:
    return int(weights["W0"].shape[0])


FORWARD_ROWS = 1024   # rows per matrix product: every product has this shape (the last padded with zeros)


def forward(weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The MLP's output for rows ``x`` (float32 numpy). A one-unit output is returned 1-D ``(n,)``.

    A row's output does not depend on the rows beside it: BLAS sums a row's products in an order
    that depends on the matrix shape and the row's place in a partial tile, so the same row in
    batches of different sizes could differ in the last bit. Here every product is of
    ``FORWARD_ROWS`` rows (a whole number of tiles, see ``in_blocks``), whichever batch a row came
    in (Spark's Arrow batches or a file's row groups), so every scoring path gives the same bits."""
    h = np.asarray(x, dtype=np.float32)
    if h.ndim != 2 or h.shape[1] != weights["W0"].shape[0]:
        raise ValueError(f"forward expects (n, {weights['W0'].shape[0]}) inputs, got {h.shape}")
    out = in_blocks(lambda chunk: _layers(weights, chunk), h)
    return out[:, 0] if out.shape[1] == 1 else out


def in_blocks(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """``fn`` applied to ``x`` in blocks of exactly ``FORWARD_ROWS`` rows (only the last one padded
    with zeros, and cut back after), so a row's result never depends on the batch it came in."""
    chunks = []
    for start in range(0, max(len(x), 1), FORWARD_ROWS):
        chunk = x[start:start + FORWARD_ROWS]
        if len(chunk) < FORWARD_ROWS:
            chunk = np.concatenate([chunk, np.zeros((FORWARD_ROWS - len(chunk), x.shape[1]), x.dtype)])
        chunks.append(fn(chunk))
    return np.concatenate(chunks)[:len(x)]


def _layers(weights: Mapping[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    for i, act in enumerate(weights["activations"]):
        h = h @ weights[f"W{i}"]
        h += weights[f"b{i}"]
        h = activate(h, str(act))
    return h


def activate(z: np.ndarray, act: str) -> np.ndarray:
    """``act`` applied to pre-activations ``z`` (in place where numpy allows)."""
    if act == "relu":
        return np.maximum(z, 0, out=z)
    if act == "sigmoid":
        return sigmoid(z)
    if act == "tanh":
        return np.tanh(z)
    if act == "exponential":
        return np.exp(np.minimum(z, 80.0), out=z)
    return z


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)
