"""The model card (markdown) and the HTML report with its plots (matplotlib, Agg backend).

Both take the ``context`` dict that ``training.train_frame`` builds: ``metrics`` (the metrics.json
content), ``plots`` (test-row labels and predictions per task and model), ``histories`` (Keras
training curves per network), ``spec``, ``cfg``, ``version`` and ``data``.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np

from retail_ann.segments import MIN_ROWS

PURCHASE_COLUMNS = ("roc_auc", "pr_auc", "best_f1", "f1", "precision", "recall", "accuracy", "brier",
                    "top_decile_lift", "threshold")
SPEND_COLUMNS = ("r2", "mae", "rmse", "mean_actual", "mean_predicted")


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def _table_rows(section: dict, columns) -> list[list[str]]:
    rows = []
    for model, m in section.items():
        rows.append([model] + [_fmt(m.get(c)) for c in columns])
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def model_card(ctx: dict) -> str:
    """A short markdown model card: data, period, sizes, features, metrics, limits."""
    metrics, spec, cfg, data = ctx["metrics"], ctx["spec"], ctx["cfg"], ctx["data"]
    targets = spec.targets
    out = [f"# Model card: retail-ann {ctx['version']}", "",
           f"Trained {metrics.get('trained_at', 'n/a')} by retail-ann {metrics.get('retail_ann_version', 'n/a')}.", ""]
    out += ["## Data",
            f"- source: `{data.get('source', 'in-memory frame')}`",
            f"- rows: {data.get('rows_total')} in the table, {data.get('rows_sampled')} sampled to the driver "
            f"(cap {cfg.sample_rows}, seed {cfg.seed}), {data.get('rows_used')} used"
            + "".join(f", {n} left out with {reason}" for reason, n in data.get("rows_dropped", {}).items()),
            f"- split ({data.get('split')}): {data.get('rows_fit')} fit, {data.get('rows_validation')} validation "
            f"(early stopping, threshold), {data.get('rows_test')} test (all metrics below)"]
    if data.get("period"):
        out.append(f"- as_of_date: {data['period']} ({', '.join(data.get('as_of_dates', []))})")
    if data.get("test_source"):
        out.append(f"- test rows: `{data['test_source']}` ({data.get('test_rows_total')} rows), not seen in training")
    for date, w in data.get("label_windows", {}).items():
        state = "complete" if w["labels_complete"] else "INCOMPLETE (trained with --allow-incomplete-labels)"
        out.append(f"- labels of {date}: to {w['label_end']}, data to {w['data_end']}: {state}")
    out.append("")
    out += ["## Targets"]
    if "purchase" in targets:
        t = targets["purchase"]
        out.append(f"- purchase: label `{t['label']}`, positive rate {t['positive_rate']:.3f} on fit rows; "
                   f"decision threshold {t['threshold']:.4f} ({t['threshold_rule']}); probabilities calibrated: "
                   f"{_calibration_method(t)} (chosen on validation rows)")
    if "spend" in targets:
        t = targets["spend"]
        how = {"two_stage": f"P(buy) x E[spend | buy] (gate: {t.get('gate')}); E[spend | buy] from buyers only (exponential output, Poisson deviance)",
               "poisson": "one network on every row, exponential output (Poisson deviance): E[spend] directly",
               "ziln": "one network, zero-inflated lognormal (P(buy), mu, sigma): E[spend] = P(buy) x exp(mu + sigma^2 / 2)",
               "log1p": f"one network on log1p(spend), smearing {t['smearing']:.3f}",
               "raw": "one network on standardised spend (MSE)"}[t["target"]]
        out.append(f"- spend: label `{t['label']}`, {how}")
    out.append("")
    out += ["## Features",
            f"- {len(spec.numeric)} numeric inputs ({sum(f.log for f in spec.numeric)} log-scaled: "
            f"{', '.join(f.name for f in spec.numeric if f.log) or 'none'}), "
            f"{len(spec.categorical)} categorical ({', '.join(c.name for c in spec.categorical) or 'none'}) "
            f"-> {spec.n_features} network inputs",
            f"- imputation {spec.imputation}; min-max to [0, 1] on fit rows, clipped when scoring to "
            f"[0, {1 + spec.extrapolation:g}]; "
            f"levels seen fewer than {spec.options.get('min_category_count')} times go to the unknown bucket"]
    if spec.dropped:
        out.append(f"- left out: {', '.join(f'{k} ({v})' for k, v in spec.dropped.items())}")
    out.append("")
    out += ["## Network",
            f"- MLP {cfg.hidden_units} ReLU, dropout {cfg.dropout}, L2 {cfg.l2}, Adam lr {cfg.learning_rate}, "
            f"batch {cfg.batch_size}, at most {cfg.epochs} epochs, early stopping patience {cfg.patience} "
            f"(best weights kept), class weights {'on' if cfg.class_weight else 'off'}"
            + (f", weights averaged over the steps (EMA momentum {cfg.ema_momentum}; validated and kept)"
               if cfg.ema_momentum > 0 else ""),
            *([f"- ensemble of {cfg.ensemble} such MLPs per network, trained together and shipped merged into one "
               f"{[u * cfg.ensemble for u in cfg.hidden_units]} MLP averaging them on the link scale; "
               + ("every member holds back the same validation rows" if cfg.ensemble_validation == "shared" else
                  "each member holds back its own fold of the training rows for early stopping, and the "
                  "threshold is chosen on those out-of-fold predictions")]
              if cfg.ensemble > 1 else []),
            f"- epochs run: {', '.join(f'{k} {v}' for k, v in metrics['training']['epochs_run'].items())}", ""]
    out += ["## Metrics (test rows)"]
    if "purchase" in metrics:
        out += ["", "Purchase:", "", _md_table(["model", *PURCHASE_COLUMNS], _table_rows(metrics["purchase"], PURCHASE_COLUMNS))]
    if "spend" in metrics:
        out += ["", "Spend (currency units):", "", _md_table(["model", *SPEND_COLUMNS], _table_rows(metrics["spend"], SPEND_COLUMNS))]
    out += ["", "`best_f1` is the F1 of the best threshold on the test rows themselves (optimistic, threshold-free); "
            "`f1` uses the threshold chosen on validation rows.", ""]
    out += ["## Limits",
            ("- Trained on a sample of at most `sample_rows` rows; metrics are from the rows of "
             + (f"the later cutoff {data['holdout_as_of']} (out of time)" if data.get("holdout_as_of") else
                "the given test table" if data.get("test_source") else
                "one random split, not from a later period") + ": expect lower figures when the shop's behaviour drifts."),
            f"- Values below the training range are clipped to it, values above it at "
            f"{spec.extrapolation:g} x its width past its top; unseen categories share one bucket.",
            "- Probabilities are calibrated to the training positive rate; a different base rate at scoring "
            "time shifts them.",
            "- Spend is an expectation per customer; single large orders are not predictable from these features.",
            ""]
    return "\n".join(out)


def write_report(directory: str | Path, ctx: dict) -> list[str]:
    """Write the PNG plots and ``report.html`` into ``directory``; returns the file names."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from retail_ann.metrics import curves

    d = Path(directory)
    files: list[str] = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(d / name, dpi=90)
        plt.close(fig)
        files.append(name)

    plots = ctx["plots"]
    calibrated = _calibration_method(ctx["spec"].targets.get("purchase", {})) != "none"
    if "purchase" in plots:
        y, preds = plots["purchase"]["y"], plots["purchase"]["p"]
        cs = {name: curves(y, p) for name, p in preds.items() if name != "baseline_majority"}

        def diagonal(label):
            return lambda ax: ax.plot([0, 1], [0, 1], "k:", label=label)

        def curve_plot(x_key, y_key, reference, xlabel, ylabel, title, file, style="-", extra=None):
            """One curve per model from ``cs`` (and ``extra``) plus a reference line, saved as ``file``."""
            fig, ax = plt.subplots(figsize=(5, 4))
            for name, c in {**cs, **(extra or {})}.items():
                ax.plot(c[x_key], c[y_key], style, label=name)
            reference(ax)
            ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
            ax.legend()
            save(fig, file)

        curve_plot("fpr", "tpr", diagonal("chance"), "false positive rate", "true positive rate", "ROC (test)",
                   "roc.png")
        curve_plot("recall", "precision", lambda ax: ax.axhline(float(np.mean(y)), color="k", ls=":", label="base rate"),
                   "recall", "precision", "Precision-recall (test)", "pr.png")
        curve_plot("cal_pred", "cal_true", diagonal("perfect"), "mean predicted probability", "observed rate",
                   "Calibration (test)", "calibration.png", style="o-",
                   extra={"ann before calibration": curves(y, plots["purchase"]["p_uncalibrated"])}
                   if calibrated else None)
        curve_plot("gains_x", "gains_y", diagonal("random"), "share of customers contacted", "share of buyers reached",
                   "Cumulative gains (test)", "gains.png")
    hist = ctx.get("histories", {})
    if hist:
        fig, axes = plt.subplots(1, len(hist), figsize=(4.5 * len(hist), 3.6), squeeze=False)
        for ax, (name, h) in zip(axes[0], hist.items()):
            ax.plot(range(1, len(h.get("loss", [])) + 1), h.get("loss", []), label="training loss")
            if h.get("val_loss"):
                ax.plot(range(1, len(h["val_loss"]) + 1), h["val_loss"], label="validation loss")
                best = int(np.argmin(h["val_loss"])) + 1
                ax.axvline(best, color="k", ls=":", label=f"best epoch {best} (kept)")
            ax.set(xlabel="epoch", ylabel="loss", title=f"{name} training")
            ax.legend()
        save(fig, "training.png")
    if "spend" in plots:
        y, preds = plots["spend"]["y"], plots["spend"]["p"]
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.scatter(np.log1p(y), np.log1p(preds["ann"]), s=4, alpha=0.4)
        top = float(np.log1p(max(np.max(y), np.max(preds["ann"]), 1.0)))
        ax.plot([0, top], [0, top], "k:")
        ax.set(xlabel="log1p(actual spend)", ylabel="log1p(predicted spend)", title="Spend: predicted vs actual (test)")
        save(fig, "spend.png")

    (d / "report.html").write_text(report_html(ctx, files))
    return files + ["report.html"]


def report_html(ctx: dict, images: list[str]) -> str:
    """The report page: what the model was trained on, how it does against each baseline (with
    intervals on the difference), where its decisions fall, its plots, and the model card."""
    metrics, data, spec, plots = ctx["metrics"], ctx["data"], ctx["spec"], ctx["plots"]
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>retail-ann model {e(ctx['version'])}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{margin:4px;border:1px solid #eee;max-width:100%}"
             "code{background:#f4f4f4;padding:0 3px;overflow-wrap:anywhere}p.verdict{font-weight:bold}</style></head><body>",
             f"<h1>retail-ann model {e(ctx['version'])}</h1>",
             f"<p>trained {e(str(metrics.get('trained_at', '')))} by retail-ann {e(str(metrics.get('retail_ann_version', '')))}</p>",
             "<h2>Data</h2>", _html_table(["", "value"], _data_rows(data, spec, plots))]
    if "purchase" in metrics:
        parts += _purchase_html(metrics["purchase"], plots["purchase"], ctx)
    if "spend" in metrics:
        parts += _spend_html(metrics["spend"], plots["spend"], plots.get("purchase"))
    if metrics.get("segments"):
        parts += _segments_html(metrics["segments"])
    parts.append("<h2>Plots</h2>")
    parts += [f"<img src='{f}' alt='{f}'>" for f in images]
    parts += [markdown_html(model_card(ctx)), "</body></html>"]   # its title is the section's heading
    return "\n".join(parts)


def _data_rows(data: dict, spec, plots: dict) -> list[list[str]]:
    rows = [["source", str(data.get("source", "in-memory frame"))],
            ["rows in the table / sampled / used", f"{data.get('rows_total')} / {data.get('rows_sampled')} / {data.get('rows_used')}"],
            ["split", f"{data.get('rows_fit')} fit, {data.get('rows_validation')} validation, {data.get('rows_test')} test "
                      f"({data.get('split')})"]]
    if data.get("period"):
        rows.append(["as_of_date", data["period"]])
    if data.get("test_source"):
        rows.append(["test rows from", data["test_source"]])
    if "purchase" in plots:
        rows.append(["base rate (test rows)", f"{float(np.mean(plots['purchase']['y'])):.3f}"])
    rows.append(["inputs", f"{len(spec.numeric)} numeric, {len(spec.categorical)} categorical -> {spec.n_features} network inputs"])
    for reason, n in data.get("rows_dropped", {}).items():
        rows.append([f"left out: {reason}", str(n)])
    return rows


def _verdict(comparisons: list[dict], figure: str) -> str:
    """One plain sentence on the ANN against the baselines."""
    if not comparisons:
        return ""
    worse = [c["baseline"] for c in comparisons if c["better"] is False]
    level = [c["baseline"] for c in comparisons if c["better"] is None]
    if worse:
        text = f"The ANN's {figure} is below {', '.join(worse)}'s on these rows (the interval lies under 0)."
    elif level:
        text = (f"The ANN is not better than {', '.join(level)} on {figure}: the interval of the difference "
                "holds 0.")
    else:
        text = f"The ANN's {figure} is above every baseline's, with the intervals above 0."
    return f"<p class='verdict'>{html.escape(text)}</p>"


def _comparison_table(comparisons: list[dict], figure: str) -> str:
    return _html_table([f"ANN - baseline, {figure}", "difference", "95 % interval"],
                       [[c["baseline"], f"{c['difference']:+.4f}", f"[{c['low']:+.4f}, {c['high']:+.4f}]"]
                        for c in comparisons])


def _purchase_html(metrics: dict, plot: dict, ctx: dict) -> list[str]:
    from sklearn.metrics import roc_auc_score

    from retail_ann.analysis import against_baselines, confusion, deciles

    y, preds = np.asarray(plot["y"]), {k: v for k, v in plot["p"].items() if k != "baseline_majority"}
    auc = lambda t, p: roc_auc_score(t, p) if t.min() != t.max() else float("nan")   # noqa: E731
    comparisons = against_baselines(y, preds, auc)
    threshold = ctx["spec"].targets["purchase"]["threshold"]
    c = confusion(y, preds["ann"], threshold)
    parts = ["<h2>Purchase (test rows)</h2>",
             _html_table(["model", *PURCHASE_COLUMNS], _table_rows(metrics, PURCHASE_COLUMNS)),
             "<h3>Against each baseline</h3>", _comparison_table(comparisons, "ROC-AUC"), _verdict(comparisons, "ROC-AUC"),
             f"<h3>Decisions at the stored threshold {threshold:.4f}</h3>",
             _html_table(["", "predicted buyer", "predicted non-buyer"],
                         [["buyer", str(c["true_positive"]), str(c["false_negative"])],
                          ["non-buyer", str(c["false_positive"]), str(c["true_negative"])]]),
             f"<p>Accuracy there is {c['accuracy']:.3f}; calling no one a buyer would score {c['majority_accuracy']:.3f}. "
             "The threshold maximises F1 on the validation rows, which trades some accuracy for finding buyers, so "
             "accuracy may sit below the majority class's.</p>",
             *_calibration_html(y, preds["ann"], plot["p_uncalibrated"], ctx["spec"].targets["purchase"],
                                metrics["ann"]),
             *_importance_html(ctx["metrics"].get("importance", {}).get("purchase", {})),
             "<h3>Deciles of the purchase probability</h3>",
             _html_table(["decile", "customers", "buyers", "rate", "lift"],
                         [[str(r["decile"]), str(r["customers"]), str(r["buyers"]), f"{r['rate']:.3f}", f"{r['lift']:.2f}"]
                          for r in deciles(preds["ann"], y)])]
    return parts


def _calibration_method(purchase: dict) -> str:
    """The calibration the purchase target (``spec.targets["purchase"]``) applies."""
    return purchase.get("calibration", {}).get("method", "none")


def _calibration_html(y: np.ndarray, p: np.ndarray, raw: np.ndarray, purchase: dict, ann: dict) -> list[str]:
    """The calibration chosen, Brier before and after on the test rows (``ann``: the ANN's test
    metrics), and the reliability bins."""
    from retail_ann.analysis import calibration

    def bins(probabilities):
        return _html_table(["probability", "rows", "mean predicted", "observed"],
                           [[b["bin"], str(b["rows"]), f"{b['mean_predicted']:.3f}", f"{b['observed']:.3f}"]
                            for b in calibration(y, probabilities)])

    fitted, method = purchase.get("calibration", {}), _calibration_method(purchase)
    tried = ", ".join(f"{k} {v:.4f}" for k, v in fitted.get("brier_cv", {}).items())
    parts = ["<h3>Calibration</h3>",
             f"<p>Calibration <b>{method}</b>, chosen on the validation rows"
             + (f" (cross-validated Brier: {tried})" if tried else f" ({fitted.get('why', 'set in the config')})")
             + ". The probabilities below, and the threshold, are the calibrated ones.</p>"]
    parts += [f"<p>Brier score on the test rows: {ann['brier_uncalibrated']:.4f} from the network, "
              f"{ann['brier']:.4f} calibrated (lower is better).</p>", bins(p)]
    if method != "none":
        parts += ["<h4>Before calibration</h4>", bins(raw)]
    return parts


def _segments_html(segments: list[dict]) -> list[str]:
    """The test figures by segment, one row each (``segments.segment_metrics``)."""
    figures = [("positive_rate", "buy rate"), ("mean_probability", "mean probability"), ("roc_auc", "ROC-AUC"),
               ("brier", "Brier"), ("mean_spend", "mean spend"), ("mean_predicted_spend", "mean predicted spend"),
               ("r2", "spend R²")]
    shown = [(k, label) for k, label in figures if any(k in s for s in segments)]

    def cell(v) -> str:
        return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else \
            f"{v:.3f}" if isinstance(v, float) else str(v)

    return ["<h2>By segment (test rows)</h2>",
            "<p>The same test rows cut by what was known at the cutoff; a segment with fewer than "
            f"{MIN_ROWS} rows is left out. A model good on average can be poor for one group: compare the "
            "ROC-AUC and the mean probability against the buy rate within each.</p>",
            _html_table(["dimension", "segment", "rows", *[label for _, label in shown]],
                        [[s["dimension"], s["segment"], str(s["rows"]), *[cell(s.get(k)) for k, _ in shown]]
                         for s in segments])]


def _importance_html(importance: dict[str, float], shown: int = 15) -> list[str]:
    if not importance:
        return []
    return ["<h3>What the model uses</h3>",
            f"<p>Permutation importance on the test rows: how much the ROC-AUC falls when one input's values are "
            f"shuffled across customers (mean of 3 shuffles; the {min(shown, len(importance))} largest of "
            f"{len(importance)} inputs). Near 0: the model does not rely on it here.</p>",
            _html_table(["input", "ROC-AUC fall"], [[k, f"{v:+.4f}"] for k, v in list(importance.items())[:shown]])]


def _spend_html(metrics: dict, plot: dict, purchase: dict | None) -> list[str]:
    from sklearn.metrics import r2_score

    from retail_ann.analysis import against_baselines, deciles

    s, preds = np.asarray(plot["y"], dtype=float), {k: v for k, v in plot["p"].items() if k != "baseline_mean"}
    comparisons = against_baselines(s, preds, r2_score)
    rows = deciles(preds["ann"], np.asarray(purchase["y"]) if purchase else None, preds["ann"], s)
    header = ["decile", "customers"] + (["buyers"] if purchase else []) + ["mean predicted spend", "mean spend"]
    return ["<h2>Spend (test rows, currency units)</h2>",
            _html_table(["model", *SPEND_COLUMNS], _table_rows(metrics, SPEND_COLUMNS)),
            "<h3>Against each baseline</h3>", _comparison_table(comparisons, "R²"), _verdict(comparisons, "R²"),
            "<h3>Deciles of the predicted spend</h3>",
            _html_table(header, [[str(r["decile"]), str(r["customers"])] + ([str(r["buyers"])] if purchase else [])
                                 + [f"{r['mean_predicted_spend']:.2f}", f"{r['mean_spend']:.2f}"] for r in rows])]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in rows) + "</table>")


def markdown_html(text: str) -> str:
    """The model card's markdown (headings, bullets, tables, paragraphs, inline code) as HTML."""
    out, bullets, table = [], [], []

    def inline(t: str) -> str:
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(t))

    def flush() -> None:
        if bullets:
            out.append("<ul>" + "".join(f"<li>{inline(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()
        if table:
            cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in table
                     if not set(row.replace("|", "").strip()) <= set("-: ")]
            out.append("<table>" + "".join("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in row) + "</tr>"
                                           for tag, row in zip(["th"] + ["td"] * len(cells), cells)) + "</table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("- "):
            bullets.append(line[2:])
            continue
        flush()
        heading = re.match(r"(#{1,3}) (.*)", line)
        if heading:
            level = len(heading.group(1)) + 1   # the page's own title is the h1
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)
