"""Training Keras MLPs on ``TrainingRows``: deterministic set-up, early stopping on the members'
validation loss, out-of-fold validation predictions, and the merged network each fit leaves."""
from __future__ import annotations

import logging
import math
import os
import time

import numpy as np

from retail_ann.config import TrainConfig
from retail_ann.model import forward
from retail_ann.splits import TrainingRows

log = logging.getLogger(__name__)


def keras_session(seed: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF C++ chatter; Python errors still raise
    import keras

    keras.utils.set_random_seed(int(seed))
    try:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - another backend
        pass
    return keras


def _epoch_logger(keras, name: str, epochs: int, members: int):
    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            parts = [f"{k}={logs[k] / (members if k.endswith('loss') else 1):.4f}"
                     for k in ("loss", "val_loss", "val_auc") if k in logs]
            log.debug("%s epoch %d/%d %s (%.1f s)", name, epoch + 1, epochs, " ".join(parts), time.time() - self._t)

    return EpochLog()


def fit_network(keras, name: str, model, rows: TrainingRows, target: np.ndarray, cfg: TrainConfig,
         sample_weight: np.ndarray | None = None) -> dict:
    """Fit ``model`` (``cfg.ensemble`` members, each given the same targets) on ``rows`` with early
    stopping on the members' validation loss. The returned history holds the members' mean loss.

    With ``cfg.ema_momentum`` the averaged weights are in the model at each epoch's end: they are
    validated, early stopping keeps the best of them, and they are what the fit leaves."""
    k = cfg.ensemble
    callbacks = [_epoch_logger(keras, name, cfg.epochs, k)]
    if cfg.ema_momentum > 0:   # before EarlyStopping, which must see the averaged weights
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if cfg.patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                                       restore_best_weights=True))
    target = target.astype(np.float32)
    if rows.groups == 1:   # every member fits the same rows and validates on fold 0
        fit, val = rows.fit, ~rows.fit
        x_fit, t_fit = rows.x[fit], target[fit]
        weights = None if sample_weight is None else sample_weight[fit]
        validation = (rows.x[val], target[val])
        if k > 1:
            t_fit, validation = [t_fit] * k, (validation[0], [validation[1]] * k)
            weights = None if weights is None else [weights] * k
    else:   # member m sees every row; weight 0 hides its own fold, which is its validation set
        n, val = len(target), rows.validation
        base = np.ones(n, np.float32) if sample_weight is None else sample_weight.astype(np.float32)
        weights, val_weights, folds = [], [], rows.folds
        for m in range(k):
            own = folds[m % rows.groups][1]
            # scaled so each member's loss is the mean over its own rows, as with a shared fold
            weights.append(np.where(own, 0.0, base).astype(np.float32) * np.float32(n / (~own).sum()))
            val_weights.append(own[val].astype(np.float32) * np.float32(val.sum() / own.sum()))
        x_fit, t_fit = rows.x, [target] * k
        validation = (rows.x[val], [target[val]] * k, val_weights)
    started = time.time()
    hist = model.fit(x_fit, t_fit, validation_data=validation, sample_weight=weights,
                     epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=callbacks, verbose=0, shuffle=True)
    history = {key: [float(v) / (k if key.endswith("loss") else 1) for v in vals]
               for key, vals in hist.history.items() if key in ("loss", "val_loss", "auc", "val_auc")}
    ran = len(history.get("loss", []))
    if "val_loss" in history:   # one line a network (the epochs are at DEBUG)
        best = int(np.argmin(history["val_loss"]))
        log.info("%s: %d of at most %d epochs in %.1f s, best validation loss %.4f at epoch %d%s", name, ran,
                 cfg.epochs, time.time() - started, history["val_loss"][best], best + 1,
                 " (its weights kept)" if cfg.patience > 0 else "")
    else:
        log.info("%s: %d epochs in %.1f s", name, ran, time.time() - started)
    return history


def validation_predictions(model, rows: TrainingRows) -> np.ndarray:
    """The ensemble's predictions for ``rows.validation``, each row by the members that did not fit
    it (out-of-fold): with a shared fold, every member (the merged model)."""
    from retail_ann.model import member_weights

    k = len(model.outputs)
    units = int(model.outputs[0].shape[-1])   # forward gives (n,) for one output unit, else (n, units)
    out = np.empty((int(rows.validation.sum()),) + ((units,) if units > 1 else ()), np.float32)
    for g, (_, held) in enumerate(rows.folds):
        members = [m for m in range(k) if m % rows.groups == g]
        out[held[rows.validation]] = forward(member_weights(model, members), rows.x[held])
    return out


def train_classifier(keras, name: str, rows: TrainingRows, y: np.ndarray, cfg: TrainConfig):
    """(merged model, history, probabilities on ``rows.validation``)."""
    from retail_ann.model import build_mlp, merge_members, output_layers

    y_fit = y[rows.fit]
    prior = float(np.clip(y_fit.mean(), 1e-4, 1 - 1e-4))
    sample_weight = None
    if cfg.class_weight:
        n1 = y_fit.sum()
        n0 = len(y_fit) - n1
        weights = {0: len(y_fit) / (2.0 * n0), 1: len(y_fit) / (2.0 * n1)}
        sample_weight = np.where(y == 1, weights[1], weights[0]).astype(np.float32)
    model = build_mlp(rows.x.shape[1], cfg.hidden_units, cfg.dropout, "sigmoid", cfg.learning_rate,
                      l2=cfg.l2, output_bias=math.log(prior / (1 - prior)), seed=cfg.seed, members=cfg.ensemble,
                      ema_momentum=cfg.ema_momentum)
    history = fit_network(keras, name, model, rows, y, cfg, sample_weight)
    if sample_weight is not None:
        # Class weights shift the learned log-odds by log(w1 / w0); shift them back so the
        # probabilities stay calibrated to the real positive rate.
        shift = np.float32(math.log(weights[1] / weights[0]))
        for out in output_layers(model):
            kernel, bias = out.get_weights()
            out.set_weights([kernel, bias - shift])
    p_val = validation_predictions(model, rows)
    return merge_members(model), history, p_val


def train_regressor(keras, name: str, rows: TrainingRows, target: np.ndarray, cfg: TrainConfig,
                     output: str = "linear", output_bias: list[float] | None = None):
    """(merged model, history, predictions on ``rows.validation``)."""
    from retail_ann.model import build_mlp, merge_members

    model = build_mlp(rows.x.shape[1], cfg.hidden_units, cfg.dropout, output, cfg.learning_rate,
                      l2=cfg.l2, output_bias=output_bias, seed=cfg.seed + 7, members=cfg.ensemble,
                      ema_momentum=cfg.ema_momentum)
    history = fit_network(keras, name, model, rows, target, cfg)
    return merge_members(model), history, validation_predictions(model, rows)


def export(model) -> dict[str, np.ndarray]:
    from retail_ann.model import export_weights

    return export_weights(model)
