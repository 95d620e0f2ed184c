"""Reason codes from the stored weights: integrated gradients of the purchase logit, folded into
the feature table's columns."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retail_ann.explain import Explainer, ReasonCodes, integrated_gradients, logit_gradients
from retail_ann.model import forward
from retail_ann.preprocessing import FeatureSpec


def mlp(rng, sizes, hidden="relu"):
    """Random float32 weights of an MLP with sigmoid output, in the stored format."""
    w = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w[f"W{i}"] = rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32)
        w[f"b{i}"] = rng.normal(0, 0.3, b).astype(np.float32)
    w["activations"] = np.array([hidden] * (len(sizes) - 2) + ["sigmoid"])
    return w


def logit(weights, x):
    p = forward(weights, x).astype(np.float64)
    return np.log(p) - np.log1p(-p)


@pytest.mark.parametrize("hidden", ["relu", "tanh", "sigmoid", "linear"])
def test_gradients_of_the_logit_match_finite_differences(hidden):
    rng = np.random.default_rng(0)
    w = mlp(rng, [6, 8, 5, 1], hidden)
    w64 = {k: (v.astype(np.float64) if k != "activations" else v) for k, v in w.items()}
    x = rng.uniform(0, 1, (4, 6))
    g = logit_gradients(w, x.astype(np.float32))

    def f(rows):   # the logit in float64, straight from the layers
        h = rows
        for i, act in enumerate(w["activations"][:-1]):
            z = h @ w64[f"W{i}"] + w64[f"b{i}"]
            h = {"relu": np.maximum(z, 0), "tanh": np.tanh(z), "sigmoid": 1 / (1 + np.exp(-z)), "linear": z}[act]
        return (h @ w64[f"W{len(w['activations']) - 1}"] + w64[f"b{len(w['activations']) - 1}"])[:, 0]

    eps = 1e-6
    numeric = np.stack([(f(x + eps * np.eye(6)[j]) - f(x - eps * np.eye(6)[j])) / (2 * eps) for j in range(6)], axis=1)
    np.testing.assert_allclose(g, numeric, rtol=1e-3, atol=1e-4)


def test_contributions_sum_to_the_logit_difference_exactly_for_one_linear_piece_and_closely_with_steps():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (200, 10)).astype(np.float32)
    ref = np.full(10, 0.5, np.float32)
    linear = mlp(rng, [10, 1])                     # logistic regression: one piece, one step is exact
    c = integrated_gradients(linear, x, ref, steps=1)
    np.testing.assert_allclose(c.sum(1), logit(linear, x) - logit(linear, ref[None])[0], atol=2e-5)
    relu = mlp(rng, [10, 16, 8, 1])
    gap = logit(relu, x) - logit(relu, ref[None])[0]
    errors = {s: np.abs(integrated_gradients(relu, x, ref, steps=s).sum(1) - gap).mean() for s in (1, 4, 64)}
    assert errors[64] < 0.01 * np.abs(gap).mean() and errors[64] < errors[4] < errors[1]


def shop_spec():
    rng = np.random.default_rng(2)
    n = 400
    df = pd.DataFrame({"n_orders": rng.poisson(3, n).astype(float), "days_since_last_order": rng.uniform(0, 365, n),
                       "pages": rng.exponential(20, n), "location": rng.choice(["DE", "FR", "IT"], n, p=[.5, .3, .2])})
    return FeatureSpec.fit(df), df


def test_the_top_reason_is_the_column_whose_ablation_to_the_reference_lowers_the_logit_most():
    """A hand-built network: the logit rises with n_orders and with location FR, falls with days
    since the last order, and ignores pages. For a frequent, recent buyer from FR the reasons come
    in the order that taking each column back to the typical customer's value shows."""
    spec, df = shop_spec()
    names = spec.feature_names
    w_in = np.zeros((len(names), 2), np.float32)
    w_in[names.index("n_orders"), 0] = 3.0
    w_in[names.index("days_since_last_order"), 1] = 2.0
    w_in[names.index("location=FR"), 0] = 0.5
    weights = {"W0": w_in, "b0": np.array([0.1, 0.1], np.float32),
               "W1": np.array([[1.0], [-1.0]], np.float32), "b1": np.zeros(1, np.float32),
               "activations": np.array(["relu", "sigmoid"])}
    explainer = Explainer(spec, weights, steps=32)
    assert explainer.sources == ["n_orders", "days_since_last_order", "pages", "location"]
    customer = pd.DataFrame({"n_orders": [12.0], "days_since_last_order": [3.0], "pages": [15.0], "location": ["FR"]})
    reasons, contributions = explainer.top(spec.transform(customer), 3)

    reference = spec.reference_row().to_pandas()
    base = logit(weights, spec.transform(customer))[0]
    drops = {}
    for column in explainer.sources:   # brute force: one column back to the reference's value
        ablated = customer.copy()
        ablated[column] = reference[column].to_numpy()
        drops[column] = base - logit(weights, spec.transform(ablated))[0]
    assert reasons[0, 0] == max(drops, key=drops.get) == "n_orders"
    assert list(reasons[0]) == sorted(drops, key=drops.get, reverse=True)[:3] == [
        "n_orders", "days_since_last_order", "location"]
    assert contributions[0, 0] > contributions[0, 1] > contributions[0, 2] > 0
    assert explainer.contributions(spec.transform(customer))[0, explainer.sources.index("pages")] == 0
    np.testing.assert_allclose(contributions[0, 0], drops["n_orders"], rtol=0.05)
    total = explainer.contributions(spec.transform(customer)).sum()
    np.testing.assert_allclose(total, base - logit(weights, spec.transform(reference))[0], rtol=1e-3, atol=1e-4)


def test_a_rows_reasons_do_not_depend_on_the_rows_beside_it():
    spec, df = shop_spec()
    rng = np.random.default_rng(3)
    explainer = Explainer(spec, mlp(rng, [spec.n_features, 8, 1]), steps=4)
    x = spec.transform(df)
    whole = explainer.contributions(x)
    np.testing.assert_array_equal(whole[7:19], explainer.contributions(x[7:19]))


def test_reason_codes_need_a_purchase_network_and_no_more_reasons_than_input_columns():
    spec, _ = shop_spec()
    ReasonCodes(4, 4).check(spec, ("purchase", "spend"))
    with pytest.raises(ValueError, match="no purchase network"):
        ReasonCodes(3, 4).check(spec, ("spend",))
    with pytest.raises(ValueError, match="more reasons than the model's 4 input columns"):
        ReasonCodes(5, 4).check(spec, ("purchase",))
