"""Training end to end on a small Spark table, the artifact round trip, and bad inputs."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from retail_ann.config import SPEND_TARGETS, TrainConfig
from retail_ann.errors import InputError
from retail_ann.model import export_weights, forward
from retail_ann.schemas import AS_OF_DATE, CORRUPT_RECORD, CUSTOMER_ID, FUTURE_SPEND, WILL_PURCHASE
from retail_ann.artifact import load_artifact
from retail_ann.targets import predictions
from retail_ann.training import train_frame, train_table

FAST = dict(epochs=6, batch_size=64, hidden_units=[16, 8], patience=3, dropout=0.1, learning_rate=0.01)


def feature_table(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    """A feature table whose labels depend on the features (so there is something to learn)."""
    rng = np.random.default_rng(seed)
    orders = rng.poisson(1.5, n)
    spend_past = np.where(orders > 0, rng.lognormal(3.5, 1.0, n) * orders, 0.0)
    recency = rng.exponential(60, n).round()
    visits = rng.poisson(4, n)
    location = rng.choice(["north", "south", "east", "west"], n)
    logit = -1.2 + 0.9 * np.log1p(orders) + 0.15 * visits - recency / 50 + (location == "north") * 0.8
    buy = rng.random(n) < 1 / (1 + np.exp(-logit))
    future = np.where(buy, rng.lognormal(2.5, 0.7, n) * (1 + np.log1p(spend_past) / 3), 0.0)
    return pd.DataFrame({
        CUSTOMER_ID: [f"c{i:05d}" for i in range(n)],
        AS_OF_DATE: [dt.date(2024, 6, 1)] * n,
        "orders": orders.astype(np.int64),
        "spend_past": spend_past,
        "days_since_last": np.where(orders > 0, recency, np.nan),
        "visits": visits.astype(np.int64),
        "age": rng.integers(18, 80, n).astype(np.int32),
        "gender": rng.choice(["f", "m"], n),
        "location": location,
        WILL_PURCHASE: buy.astype(np.int32),
        FUTURE_SPEND: future,
    })


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    pdf = feature_table()
    path = str(tmp_path_factory.mktemp("features") / "features")
    spark.createDataFrame(pdf).write.parquet(path)
    out = tmp_path_factory.mktemp("models") / "model"
    cfg = TrainConfig(**FAST, seed=3)
    result = train_table(spark, path, str(out), cfg)
    return {"pdf": pdf, "path": path, "out": out, "result": result, "cfg": cfg}


def test_end_to_end_beats_the_baselines_and_writes_the_artifact(trained):
    out, result = trained["out"], trained["result"]
    for name in ("model_purchase.keras", "model_spend.keras", "weights_purchase.npz", "weights_spend.npz",
                 "feature_spec.json", "metrics.json", "model_card.md", "VERSION", "report.html",
                 "roc.png", "pr.png", "calibration.png", "gains.png", "training.png", "spend.png"):
        assert (out / name).is_file(), name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]   # no temp dirs left behind
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["purchase"]) == {"ann", "baseline_majority", "baseline_logistic"}
    assert set(metrics["spend"]) == {"ann", "baseline_mean", "baseline_ridge"}
    ann, majority = metrics["purchase"]["ann"], metrics["purchase"]["baseline_majority"]
    assert ann["roc_auc"] > majority["roc_auc"] + 0.15
    assert metrics["spend"]["ann"]["r2"] > metrics["spend"]["baseline_mean"]["r2"]
    assert metrics["data"]["rows_sampled"] == 2000
    assert metrics["data"]["rows_fit"] + metrics["data"]["rows_validation"] + metrics["data"]["rows_test"] == 2000
    assert result["version"] == (out / "VERSION").read_text().strip()


def test_spec_is_fitted_on_the_fit_rows_only(tmp_path):
    from retail_ann.labels import binary_label
    from retail_ann.splits import split_rows

    pdf = feature_table(600, seed=5)
    cfg = TrainConfig(**FAST, task="purchase", report=False)
    split = split_rows(pdf, binary_label(pdf[WILL_PURCHASE], WILL_PURCHASE), None, cfg)
    held_out = np.concatenate([split.val, split.test])
    pdf.loc[held_out, "visits"] = 10_000          # extreme values outside the fit rows
    pdf.loc[held_out, "location"] = "atlantis"   # a level seen only outside the fit rows
    result = train_frame(pdf, str(tmp_path / "m"), cfg)
    spec = load_artifact(tmp_path / "m").spec
    assert spec.n_rows == result["data"]["rows_fit"] == len(split.fit)
    visits = next(f for f in spec.numeric if f.name == "visits")
    assert visits.hi == pdf.loc[split.fit, "visits"].max() < 100
    assert "atlantis" not in spec.categorical[[c.name for c in spec.categorical].index("location")].levels


def test_artifact_round_trip_predicts_like_keras(trained):
    import keras

    out, pdf = trained["out"], trained["pdf"]
    art = load_artifact(out)
    assert art.tasks == ("purchase", "spend") and 0 < art.threshold < 1
    x = art.spec.transform(pdf.head(300))
    pred = art.predict_matrix(x)
    p = pred["purchase_probability"]
    model = keras.models.load_model(out / "model_purchase.keras")
    np.testing.assert_allclose(p, np.asarray(model(x, training=False)).reshape(-1), atol=1e-5)
    np.testing.assert_array_equal(p, forward(art.weights["purchase"], x))
    np.testing.assert_array_equal(pred["predicted_purchase"], (p >= art.threshold).astype(np.int32))
    spend = pred["predicted_spend"]
    assert spend.shape == (300,) and (spend >= 0).all()
    assert set(predictions(art.spec.targets, x, art.numpy_runner(), ("spend",))) == {"predicted_spend"}
    from_batch = art.predict(pdf.head(300))
    for name, values in pred.items():
        np.testing.assert_array_equal(from_batch[name], values)


def test_load_artifact_needs_no_tensorflow_and_checks_the_version(trained, tmp_path):
    out, pdf = trained["out"], trained["pdf"]
    batch = tmp_path / "batch.parquet"
    pdf.head(50).to_parquet(batch)
    expected = load_artifact(out).predict(pdf.head(50))["purchase_probability"]
    code = (
        "import sys, numpy as np, pyarrow.parquet as pq\n"
        "from retail_ann.artifact import load_artifact\n"
        f"a = load_artifact({str(out)!r})\n"
        f"p = a.predict(pq.read_table({str(batch)!r}))['purchase_probability']\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "print(' '.join(repr(float(v)) for v in p))\n"
    )
    got = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    np.testing.assert_array_equal(np.array(got, dtype=np.float32), expected)
    # a tampered artifact is refused
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(out, copy)
    spec = json.loads((copy / "feature_spec.json").read_text())
    spec["targets"]["purchase"]["threshold"] = 0.01
    (copy / "feature_spec.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match="VERSION"):
        load_artifact(copy)
    with pytest.raises(InputError, match="not a model directory"):
        load_artifact(tmp_path / "nothing")


@pytest.mark.parametrize("target, own_gate", [(t, False) for t in SPEND_TARGETS] + [("two_stage", True)],
                         ids=[*SPEND_TARGETS, "two_stage-own_gate"])
def test_every_spend_target_scores_in_numpy_what_its_keras_networks_give(tmp_path, target, own_gate):
    """Each spend target's predictions from the numpy forward pass equal those from its saved Keras
    networks, spend alone equals spend beside purchase, and it learns more than the mean. With
    ``own_gate`` the purchase label disagrees with spend > 0 on a tenth of the rows, so the
    two-stage model trains and ships its own gate network (``spend_gate``)."""
    import keras

    pdf = feature_table(1500, seed=9)
    if own_gate:
        flip = np.random.default_rng(9).random(len(pdf)) < 0.1
        pdf[WILL_PURCHASE] = np.where(flip, 1 - pdf[WILL_PURCHASE], pdf[WILL_PURCHASE])
    result = train_frame(pdf, str(tmp_path / "m"), TrainConfig(**FAST, spend_target=target, report=False))
    art = load_artifact(tmp_path / "m")
    assert art.spec.targets["spend"]["target"] == target
    assert ("spend_gate" in art.weights) == own_gate == (art.spec.targets["spend"].get("gate") == "spend_gate")
    x = art.spec.transform(pdf.head(300))
    networks = {name: keras.saving.load_model(tmp_path / "m" / f"model_{name}.keras", compile=False)   # as scoring does
                for name in art.weights}
    through_keras = predictions(art.spec.targets, x, lambda name, rows: np.asarray(networks[name](rows, training=False)),
                                ("purchase", "spend"))
    through_numpy = art.predict_matrix(x)
    np.testing.assert_allclose(through_numpy["predicted_spend"], through_keras["predicted_spend"], rtol=1e-5, atol=1e-6)
    alone = predictions(art.spec.targets, x, art.numpy_runner(), ("spend",))["predicted_spend"]
    np.testing.assert_array_equal(alone, through_numpy["predicted_spend"])
    assert result["spend"]["ann"]["r2"] > result["spend"]["baseline_mean"]["r2"]


def test_generic_table_with_string_label_and_integer_categories(tmp_path):
    pdf = feature_table(600, seed=11).drop(columns=[FUTURE_SPEND, WILL_PURCHASE])
    pdf["Revenue"] = np.where(pdf["orders"] > 1, "TRUE", "FALSE")
    pdf["region_code"] = (pdf.index % 3).astype(np.int64)
    cfg = TrainConfig(**FAST, label="Revenue", categorical=["region_code"], exclude=["age"], report=False)
    result = train_frame(pdf, str(tmp_path / "m"), cfg)
    assert set(result) >= {"purchase", "data", "version"} and "spend" not in result
    art = load_artifact(tmp_path / "m")
    assert art.tasks == ("purchase",)
    assert "age" not in art.spec.input_columns and "Revenue" not in art.spec.input_columns
    assert art.spec.input_columns["region_code"] == "categorical"
    assert not (tmp_path / "m" / "report.html").exists()
    # retraining into the same directory replaces it atomically
    train_frame(pdf, str(tmp_path / "m"), cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.filterwarnings("error::UserWarning")   # loading the merged .keras file must not warn
@pytest.mark.parametrize("validation,ema", [("shared", 0.0), ("folds", 0.9)])   # ~10-step average: 6 short epochs
def test_ensemble_members_train_together_and_ship_as_one_mlp(tmp_path, validation, ema):
    import keras

    pdf = feature_table(1000, seed=5)
    cfg = TrainConfig(**FAST, ensemble=3, ensemble_validation=validation, class_weight=True, report=False,
                      ema_momentum=ema)
    result = train_frame(pdf, str(tmp_path / "m"), cfg)
    art = load_artifact(tmp_path / "m")
    assert "ensemble of 3 such MLPs" in (tmp_path / "m" / "model_card.md").read_text()
    assert ("EMA momentum 0.9;" in (tmp_path / "m" / "model_card.md").read_text()) == (ema > 0)
    assert ("members hold back 3 of 10 folds" in result["data"]["split"]) == (validation == "folds")
    assert ("its own fold" in (tmp_path / "m" / "model_card.md").read_text()) == (validation == "folds")
    for name in ("purchase", "spend"):
        assert [art.weights[name][f"W{i}"].shape[1] for i in range(3)] == [48, 24, 1]
        model = keras.models.load_model(tmp_path / "m" / f"model_{name}.keras")
        x = art.spec.transform(pdf.head(200))
        np.testing.assert_allclose(forward(art.weights[name], x), np.asarray(model(x, training=False)).reshape(-1),
                                   rtol=1e-5, atol=1e-5)
    ann, logistic = result["purchase"]["ann"], result["purchase"]["baseline_logistic"]
    assert ann["roc_auc"] > 0.6 and ann["roc_auc"] > logistic["roc_auc"] - 0.02
    # class weights are corrected back: the mean probability stays near the positive rate
    p = art.predict_matrix(art.spec.transform(pdf))["purchase_probability"]
    assert abs(p.mean() - pdf[WILL_PURCHASE].mean()) < 0.05


def test_early_stopping_keeps_the_weights_it_validated_with_and_without_averaging():
    """The fitted model is the epoch with the lowest logged validation loss. With ``ema_momentum``
    the validated (and so the kept) weights are the moving average, not the last step's."""
    from retail_ann.model import build_mlp
    from retail_ann.networks import fit_network, keras_session
    from retail_ann.splits import TrainingRows

    pdf = feature_table(800, seed=3)
    x = np.column_stack([np.log1p(pdf[c]) for c in ("orders", "visits", "spend_past")]).astype(np.float32)
    y = pdf[WILL_PURCHASE].to_numpy(np.float32)
    fold = (np.arange(len(y)) % 5 != 0).astype(np.int64)        # fold 0 (every fifth row) validates
    val_loss = {}
    for ema in (0.0, 0.9):
        cfg = TrainConfig(**{**FAST, "epochs": 10, "patience": 2}, ema_momentum=ema)
        keras = keras_session(cfg.seed)
        model = build_mlp(x.shape[1], cfg.hidden_units, cfg.dropout, "sigmoid", cfg.learning_rate, l2=cfg.l2,
                          seed=cfg.seed, ema_momentum=ema)
        history = fit_network(keras, "purchase", model, TrainingRows(x, fold, 1), y, cfg)
        kept = model.evaluate(x[fold == 0], y[fold == 0], batch_size=cfg.batch_size, verbose=0, return_dict=True)
        assert kept["loss"] == pytest.approx(min(history["val_loss"]), rel=1e-5)
        val_loss[ema] = history["val_loss"]
    assert val_loss[0.9][:3] != pytest.approx(val_loss[0.0][:3], rel=1e-3)   # same start, averaged weights


def test_validation_folds_cut_the_fit_rows_like_the_validation_rows():
    from retail_ann.labels import binary_label
    from retail_ann.splits import split_rows

    pdf = feature_table(1000, seed=5)
    y = binary_label(pdf[WILL_PURCHASE], WILL_PURCHASE)
    shared = split_rows(pdf, y, None, TrainConfig(**FAST, ensemble=4))
    folds = split_rows(pdf, y, None, TrainConfig(**FAST, ensemble=4, ensemble_validation="folds"))
    for split in (shared, folds):
        np.testing.assert_array_equal(split.train, np.sort(np.concatenate([split.fit, split.val])))
        np.testing.assert_array_equal(split.train[split.fold == 0], split.val)
    np.testing.assert_array_equal(folds.val, shared.val)     # fold 0 is the shared validation set
    assert shared.groups == 1 and set(shared.fold) == {0, 1}
    assert folds.groups == 4 and set(folds.fold) == set(range(10))
    sizes = np.bincount(folds.fold)
    assert sizes.max() - sizes.min() <= 1                           # 800 training rows, ten folds of 80
    rates = [y[folds.train[folds.fold == f]].mean() for f in range(10)]
    assert max(rates) - min(rates) < 0.03                           # stratified
    # with repeated ids (several as_of_dates) a customer's rows stay in one fold
    twice = pd.concat([pdf, pdf.assign(**{AS_OF_DATE: dt.date(2024, 7, 1)})], ignore_index=True)
    grouped = split_rows(twice, binary_label(twice[WILL_PURCHASE], WILL_PURCHASE), None,
                     TrainConfig(**FAST, ensemble=4, ensemble_validation="folds"))
    ids = twice[CUSTOMER_ID].to_numpy()[grouped.train]
    assert (pd.Series(grouped.fold).groupby(ids).nunique() == 1).all()
    assert grouped.groups == 4 and set(grouped.fold) == set(range(10))
    # a validation share of one half leaves two folds: members take turns holding back either half
    halves = split_rows(pdf, y, None, TrainConfig(**FAST, ensemble=3, ensemble_validation="folds", validation_split=0.5))
    assert halves.groups == 2 and np.bincount(halves.fold).tolist() == [400, 400]


def test_split_seed_holds_the_rows_while_seed_changes():
    from retail_ann.labels import binary_label
    from retail_ann.splits import split_rows

    pdf = feature_table(600, seed=5)
    y = binary_label(pdf[WILL_PURCHASE], WILL_PURCHASE)
    cfg = dict(FAST, ensemble=3, ensemble_validation="folds")
    base = split_rows(pdf, y, None, TrainConfig(**cfg, seed=42))
    held = split_rows(pdf, y, None, TrainConfig(**cfg, seed=7, split_seed=42))
    moved = split_rows(pdf, y, None, TrainConfig(**cfg, seed=7))
    for key in ("fit", "val", "test", "fold"):
        np.testing.assert_array_equal(getattr(held, key), getattr(base, key))
    assert not np.array_equal(moved.test, base.test)


def test_fold_members_never_fit_the_rows_they_validate_on():
    """On labels that are pure noise, a net can only memorise: each member does so on the rows it
    fits, so the merged ensemble ranks the training rows well, while the validation predictions
    (every row by the member that held it back) are no better than chance."""
    from sklearn.metrics import roc_auc_score

    from retail_ann.networks import keras_session, train_classifier
    from retail_ann.splits import TrainingRows

    n, members = 240, 4
    rng = np.random.default_rng(0)
    x = np.eye(n, dtype=np.float32)                     # one input per row: nothing generalises
    y = (rng.random(n) < 0.5).astype(np.int8)
    rows = TrainingRows(x, np.arange(n) % members, members)
    cfg = TrainConfig(hidden_units=[16], dropout=0.0, l2=0.0, learning_rate=0.01, epochs=60, batch_size=32,
                      patience=0, ensemble=members, ensemble_validation="folds")
    model, _, p_val = train_classifier(keras_session(0), "noise", rows, y, cfg)
    assert rows.validation.all() and len(p_val) == n
    assert roc_auc_score(y, forward(export_weights(model), x)) > 0.9
    assert abs(roc_auc_score(y, p_val) - 0.5) < 0.15



def test_logistic_baseline_picks_its_threshold_on_rows_it_did_not_fit():
    """The same noise with one input per row: a logistic regression memorises the rows it fits,
    so a threshold picked on them sits well above the positive rate; picked on out-of-fold
    probabilities (unseen rows get the intercept) it sits at about the rate, like the ANN's."""
    from retail_ann.metrics import purchase_baselines
    from retail_ann.splits import TrainingRows

    n = 400
    y = (np.random.default_rng(3).random(n) < 0.3).astype(np.int8)
    x = np.eye(n, dtype=np.float32)
    rows = TrainingRows(x, np.arange(n) % 5, 5)
    assert rows.learned.all()
    threshold = {}
    for name, folds in (("out_of_fold", rows.folds), ("in_sample", [(rows.learned, rows.fold == 0)])):
        metrics, _ = purchase_baselines(x, y, folds, x[:100], y[:100])
        threshold[name] = metrics["baseline_logistic"]["threshold"]
    assert abs(threshold["out_of_fold"] - y.mean()) < 0.03
    assert threshold["in_sample"] > y.mean() + 0.08


@pytest.mark.parametrize("change,message", [
    (lambda d: d.assign(**{WILL_PURCHASE: d["visits"]}), "is not binary"),
    (lambda d: d.drop(columns=[WILL_PURCHASE, FUTURE_SPEND]), "no label column"),
    (lambda d: d.head(30), "too few rows"),
    (lambda d: d.assign(**{WILL_PURCHASE: 0}), "too few rows of one class"),
    (lambda d: d[[CUSTOMER_ID, AS_OF_DATE, WILL_PURCHASE]], "no feature columns"),
    (lambda d: d.assign(**{FUTURE_SPEND: "lots"}), "is not numeric"),
    (lambda d: d.assign(**{CUSTOMER_ID: "c1"}), "only 1 distinct customer_id"),
    (lambda d: d.assign(**{CUSTOMER_ID: None}), r"no rows left to train on \(300 with missing customer_id\)"),
])
def test_bad_inputs_are_input_errors(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        train_frame(change(feature_table(300)), str(tmp_path / "m"), TrainConfig(**FAST, report=False))
    assert not (tmp_path / "m").exists()



def test_unusable_rows_are_left_out_counted_and_reported(tmp_path):
    """Rows without a label or an id are dropped with their count in metrics.json and the model
    card; a feature column with values beyond float32's range still trains to finite outputs."""
    df = feature_table(600)
    malformed, no_label, no_id = df.index % 97 == 5, df.index % 9 == 0, df.index % 50 == 1
    df[CORRUPT_RECORD] = np.where(malformed, "c5,1,2,,surplus", None)   # as a CSV or JSON reader leaves it
    df.loc[no_label, WILL_PURCHASE] = None
    df.loc[no_id, CUSTOMER_ID] = np.where(df.index[no_id] % 100 == 1, None, " ")   # null or blank
    df["spend_past"] = df["spend_past"] * 1e300
    out = tmp_path / "m"
    r = train_frame(df, str(out), TrainConfig(**FAST, report=False))
    dropped = {"malformed record": int(malformed.sum()), "missing label": int((no_label & ~malformed).sum()),
               "missing customer_id": int((no_id & ~no_label & ~malformed).sum())}
    assert r["data"]["rows_dropped"] == dropped and min(dropped.values()) > 0
    assert r["data"]["rows_used"] == 600 - sum(dropped.values())
    assert CORRUPT_RECORD not in json.dumps(load_artifact(str(out)).spec.to_dict())   # never a feature
    card = (out / "model_card.md").read_text()
    assert ("{malformed record} left out with malformed record, {missing label} left out with missing label, "
            "{missing customer_id} left out with missing customer_id".format_map(dropped) in card)
    assert np.isfinite(r["purchase"]["ann"]["roc_auc"]) and np.isfinite(r["spend"]["ann"]["r2"])
    art = load_artifact(str(out))
    assert np.isfinite(art.spec.transform(df)).all()


def test_imputation_drop_leaves_out_the_rows_with_a_missing_number(tmp_path):
    """``imputation: drop``: a row with a missing or non-finite numeric feature is left out and
    counted, not imputed."""
    df = feature_table(600)
    df.loc[df.index % 40 == 3, "spend_past"] = np.inf
    missing = int((df["days_since_last"].isna() | ~np.isfinite(df["spend_past"])).sum())
    r = train_frame(df, str(tmp_path / "m"), TrainConfig(**FAST, report=False, imputation="drop"))
    assert r["data"]["rows_dropped"] == {"a missing numeric feature (imputation: drop)": missing} and missing > 100
    assert r["data"]["rows_used"] == 600 - missing


def test_named_label_must_exist_and_empty_table_is_refused(spark, tmp_path):
    with pytest.raises(InputError, match="label column Revenue not found"):
        train_frame(feature_table(300), str(tmp_path / "m"), TrainConfig(**FAST, label="Revenue"))
    path = str(tmp_path / "empty")
    spark.createDataFrame(feature_table(10)).limit(0).write.parquet(path)
    with pytest.raises(InputError, match="empty"):
        train_table(spark, path, str(tmp_path / "m"), TrainConfig(**FAST))


def test_a_given_test_table_is_the_test_set_and_every_training_row_trains(spark, tmp_path):
    """--test-features: the metrics are on exactly that table's rows (here a later cutoff of the same
    customers, so ids repeat across the two tables); the spec and networks never saw them."""
    early, late = feature_table(800, seed=1), feature_table(400, seed=2)
    late[AS_OF_DATE] = dt.date(2024, 7, 1)
    late["spend_past"] *= 1000.0   # out of the training range: a spec fitted on these rows would show it
    paths = {}
    for name, pdf in (("early", early), ("late", late)):
        paths[name] = str(tmp_path / name)
        spark.createDataFrame(pdf).write.parquet(paths[name])
    out = tmp_path / "m"
    r = train_table(spark, paths["early"], str(out), TrainConfig(**FAST, report=False), test_path=paths["late"])
    data = r["data"]
    assert data["rows_test"] == 400 and data["rows_fit"] + data["rows_validation"] == 800
    assert data["split"].startswith("test rows from the test table") and data["test_rows_total"] == 400
    spec = load_artifact(str(out)).spec
    x = spec.transform(late)[:, spec.feature_names.index("spend_past")]
    beyond = x[late["spend_past"].to_numpy() > early["spend_past"].max()]   # past the range of the early rows
    assert len(beyond) and (beyond > 1.0).all() and beyond.max() == pytest.approx(1.0 + TrainConfig().extrapolation)
    assert spec.transform(early)[:, spec.feature_names.index("spend_past")].max() == pytest.approx(1.0)
    assert "test rows: `" in (out / "model_card.md").read_text()
    # nothing of the test rows reaches the spec, the weights, the threshold or early stopping: other
    # test rows (labels flipped, features shifted) give the same model, bit for bit
    other = late.assign(**{WILL_PURCHASE: 1 - late[WILL_PURCHASE], FUTURE_SPEND: late[FUTURE_SPEND] * 3 + 1,
                           "visits": late["visits"] + 50})
    r1 = train_frame(early, str(tmp_path / "m3"), TrainConfig(**FAST, report=False), test_pdf=late)
    r2 = train_frame(early, str(tmp_path / "m4"), TrainConfig(**FAST, report=False), test_pdf=other)
    assert r2["version"] == r1["version"] and r2["purchase"]["ann"]["roc_auc"] != r1["purchase"]["ann"]["roc_auc"]
    with pytest.raises(InputError, match="the test table lacks column\\(s\\) of the training table: visits"):
        train_frame(early, str(tmp_path / "m2"), TrainConfig(**FAST), test_pdf=late.drop(columns=["visits"]))


def test_report_holds_the_sections_an_analyst_reads(trained):
    """report.html: the data, the ANN against each baseline with an interval and a plain verdict,
    the decisions at the stored threshold (counts that add up to the test rows), calibration with
    counts, deciles, training curves, and the model card as HTML (not raw markdown)."""
    import re

    page = (trained["out"] / "report.html").read_text()
    metrics = json.loads((trained["out"] / "metrics.json").read_text())
    for heading in ("Data", "Purchase (test rows)", "Against each baseline", "Calibration",
                    "Deciles of the purchase probability", "Spend (test rows, currency units)",
                    "Deciles of the predicted spend", "Plots", f"Model card: retail-ann {metrics['version']}"):
        assert f">{heading}</h" in page, heading
    assert "95 % interval" in page and page.count("class='verdict'") == 2
    assert f"Decisions at the stored threshold {load_artifact(trained['out']).threshold:.4f}" in page
    cells = re.search(r"<td>buyer</td><td>(\d+)</td><td>(\d+)</td></tr><tr><td>non-buyer</td><td>(\d+)</td><td>(\d+)</td>",
                      page)
    assert sum(int(n) for n in cells.groups()) == metrics["data"]["rows_test"]
    card = page[page.index(">Model card: retail-ann "):]
    assert page.count(">Model card") == 1
    assert "<pre>" not in page and "<h3>Data</h3>" in card and "<li>" in card and "<table>" in card
    assert not re.search(r"^(#|- |\|)", card, re.M)   # no markdown left raw
    assert f"by retail-ann {metrics['retail_ann_version']}" in page and metrics["trained_at"] in page
    assert "training.png" in page and "calibration.png" in page
    # by segment: the four locations cover the test rows, each with its own figures; "north" buys more
    location = {s["segment"]: s for s in metrics["segments"] if s["dimension"] == "location"}
    assert set(location) == {"north", "south", "east", "west"}
    assert sum(s["rows"] for s in location.values()) == metrics["data"]["rows_test"]
    assert all(0 <= s["positive_rate"] <= 1 and "r2" in s for s in location.values())
    assert location["north"]["positive_rate"] > max(location[k]["positive_rate"] for k in ("south", "east", "west"))
    assert {s["dimension"] for s in metrics["segments"]} == {"location", "age"}
    assert ">By segment (test rows)</h2>" in page and "<td>north</td>" in page
    # calibration: what was chosen on the validation rows, Brier before and after on the test rows
    fitted = load_artifact(trained["out"]).spec.targets["purchase"]["calibration"]
    assert f"Calibration <b>{fitted['method']}</b>, chosen on the validation rows" in page
    brier = metrics["purchase"]["ann"]
    assert f"Brier score on the test rows: {brier['brier_uncalibrated']:.4f} from the network, {brier['brier']:.4f} " \
        "calibrated" in page
    # permutation importance per input column: every input of the spec, the ones the labels depend on first
    importance = metrics["importance"]["purchase"]
    assert set(importance) == set(load_artifact(trained["out"]).spec.input_columns) and ">What the model uses</h3>" in page
    assert set(list(importance)[:3]) & {"orders", "visits", "days_since_last"} and importance["age"] < 0.02


def test_scoring_gives_the_calibrated_probability_and_decides_on_it(trained):
    """The purchase probability a model gives is the network's, calibrated as the spec says (fitted
    on the validation rows), and the stored threshold applies to it; the test Brier is the
    calibrated one and the network's is kept beside it."""
    from retail_ann.calibration import apply as calibrate
    from retail_ann.model import forward
    from retail_ann.schemas import PREDICTED_PURCHASE, PURCHASE_PROBABILITY

    artifact = load_artifact(trained["out"])
    fitted = artifact.spec.targets["purchase"]["calibration"]
    assert fitted["method"] in ("none", "platt", "isotonic") and fitted["rows"] > 0
    x = artifact.spec.transform(trained["pdf"].head(500))
    got = artifact.predict_matrix(x)
    np.testing.assert_array_equal(got[PURCHASE_PROBABILITY], calibrate(fitted, forward(artifact.weights["purchase"], x)))
    np.testing.assert_array_equal(got[PREDICTED_PURCHASE], got[PURCHASE_PROBABILITY] >= artifact.threshold)
    ann = json.loads((trained["out"] / "metrics.json").read_text())["purchase"]["ann"]
    assert 0 < ann["brier"] < 0.25 and 0 < ann["brier_uncalibrated"] < 0.25
