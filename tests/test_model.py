"""The numpy forward pass equals Keras, survives the .npz round trip, and never needs TensorFlow."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from retail_ann.model import (
    build_mlp, export_weights, forward, load_weights_npz, member_weights, merge_members, save_weights_npz, ziln_loss,
    ziln_mean,
)


@pytest.mark.parametrize("output,hidden", [("sigmoid", (16, 8)), ("linear", (12, 8, 4)), ("exponential", (8,)),
                                           ("ziln", (8, 4))])
def test_numpy_forward_equals_keras(tmp_path, output, hidden):
    import keras

    keras.utils.set_random_seed(0)
    model = build_mlp(7, hidden, dropout=0.3, output=output, learning_rate=0.01, seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((256, 7)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 1).astype(np.float32)
    if output == "ziln":   # zero or a lognormal amount
        y = y * rng.lognormal(x[:, 2], 0.5).astype(np.float32)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)   # move the weights off their initial values
    expected = np.asarray(model(x, training=False))
    expected = expected if output == "ziln" else expected.reshape(-1)
    weights = export_weights(model)
    assert list(weights["activations"]) == ["relu"] * len(hidden) + ["linear" if output == "ziln" else output]
    np.testing.assert_allclose(forward(weights, x), expected, rtol=0, atol=1e-5)
    save_weights_npz(weights, tmp_path / "w.npz")
    loaded = load_weights_npz(tmp_path / "w.npz")
    assert set(loaded) == set(weights)
    np.testing.assert_array_equal(forward(loaded, x), forward(weights, x))
    # the saved .keras model predicts the same
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)   # as scoring's keras engine loads
    np.testing.assert_allclose(np.asarray(again(x, training=False)).reshape(expected.shape), expected, atol=1e-6)


def test_ziln_loss_is_the_zero_inflated_lognormal_likelihood_and_its_mean_the_expected_spend():
    from scipy import stats

    z = np.array([[0.3, 1.0, 0.2], [-1.5, 0.5, -2.0], [2.0, -0.4, 3.0]], np.float32)
    y = np.array([0.0, 2.5, 0.7], np.float32)
    p = 1 / (1 + np.exp(-z[:, 0].astype(np.float64)))
    sigma = np.maximum(np.log1p(np.exp(z[:, 2].astype(np.float64))), 0.01)
    # -log of: (1 - p) for a zero; p x the lognormal density of log(y) (the density of y times y)
    expected = np.where(y > 0, -np.log(p) - stats.norm.logpdf(np.log(np.where(y > 0, y, 1)), z[:, 1], sigma),
                        -np.log(1 - p))
    np.testing.assert_allclose(np.asarray(ziln_loss(y, z)), expected, rtol=1e-5)
    draws = np.random.default_rng(0).lognormal(z[2, 1], sigma[2], 2_000_000) * p[2]
    assert ziln_mean(z)[2] == pytest.approx(draws.mean(), rel=0.02)


@pytest.mark.parametrize("output", ["sigmoid", "exponential", "ziln"])
def test_merged_ensemble_is_one_mlp_averaging_the_members_pre_activations(output):
    import keras

    keras.utils.set_random_seed(1)
    model = build_mlp(5, (6, 4), dropout=0.2, output=output, learning_rate=0.01, seed=3, members=3)
    rng = np.random.default_rng(1)
    x = rng.random((200, 5)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.float32) + (output == "exponential")
    model.fit(x, [y] * 3, epochs=2, batch_size=32, verbose=0)
    units = 3 if output == "ziln" else 1   # ziln: three linear outputs, each averaged

    def out(a):
        return np.asarray(a).reshape(len(x), units).astype(np.float64)

    members = [out(o) for o in model(x, training=False)]
    assert not np.allclose(members[0], members[1])          # different initialisations
    link, inverse = {"sigmoid": (lambda p: np.log(p / (1 - p)), lambda z: 1 / (1 + np.exp(-z))),
                     "exponential": (np.log, np.exp), "ziln": (lambda z: z, lambda z: z)}[output]
    expected = inverse(np.mean([link(m) for m in members], axis=0))
    merged = merge_members(model)
    weights = export_weights(merged)
    assert [weights[f"W{i}"].shape for i in range(3)] == [(5, 18), (18, 12), (12, units)]
    np.testing.assert_allclose(out(forward(weights, x)), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out(merged(x, training=False)), out(forward(weights, x)), atol=1e-5)
    # a subset of members: member 1 alone is that member; members 0 and 2 average those two
    np.testing.assert_allclose(out(forward(member_weights(model, [1]), x)), members[1], rtol=1e-4, atol=1e-5)
    pair = member_weights(model, [0, 2])
    assert [pair[f"W{i}"].shape for i in range(3)] == [(5, 12), (12, 8), (8, units)]
    np.testing.assert_allclose(out(forward(pair, x)), inverse((link(members[0]) + link(members[2])) / 2),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="members must name"):
        member_weights(model, [3])


def test_forward_checks_its_input_width_and_is_stable_at_extremes():
    w = {"W0": np.ones((3, 2), np.float32) * 100, "b0": np.zeros(2, np.float32),
         "W1": np.ones((2, 1), np.float32), "b1": np.array([-1e4], np.float32),
         "activations": np.array(["relu", "sigmoid"])}
    with pytest.raises(ValueError):
        forward(w, np.zeros((2, 4), np.float32))
    with np.errstate(over="raise"):
        p = forward(w, np.array([[0, 0, 0], [100, 100, 100]], np.float32))
    assert p.shape == (2,) and np.isfinite(p).all() and p[0] == 0.0 and p[1] == 1.0


def test_scoring_imports_never_load_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "import retail_ann.model as m, retail_ann.preprocessing, retail_ann.training, retail_ann.artifact\n"
        "import retail_ann.targets, retail_ann.networks, retail_ann.splits, retail_ann.labels\n"
        "w = {'W0': np.ones((2, 1), np.float32), 'b0': np.zeros(1, np.float32), 'activations': np.array(['sigmoid'])}\n"
        "m.forward(w, np.zeros((3, 2), np.float32))\n"
        "bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'sklearn')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_rows_output_does_not_depend_on_the_rows_scored_beside_it():
    """The same row gives the same bits in a batch of 1, of 17 or of 4,093 rows at any offset:
    scoring paths that cut a table into batches differently (Arrow batches, file row groups,
    Spark Connect) must write identical predictions."""
    rng = np.random.default_rng(0)
    sizes = [(100, 32), (32, 16), (16, 3)]
    w = {f"W{i}": rng.normal(size=s).astype(np.float32) for i, s in enumerate(sizes)}
    w |= {f"b{i}": rng.normal(size=s[1]).astype(np.float32) for i, s in enumerate(sizes)}
    w["activations"] = np.array(["relu", "relu", "linear"])
    x = rng.random((20_000, 100)).astype(np.float32)
    whole = forward(w, x)
    for start in range(0, 19_000, 997):
        for size in (1, 17, 999, 1024, 1025, 4093):
            np.testing.assert_array_equal(forward(w, x[start:start + size]), whole[start:start + size])
