"""Job configuration as data: one dataclass per job, loaded from ``conf/<job>.yaml`` and overridden
by CLI flags. Dataclass defaults equal the shipped YAML (a test keeps them in step)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from retail_ann.calibration import METHODS as CALIBRATION_METHODS
from retail_ann.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"   # the checkout's (or an editable install's)
PACKAGED_CONF = "conf"   # the same YAML inside the package: the zip spark-submit ships, or a wheel

OUTPUT_FORMATS = ("parquet", "delta")

DEFAULT_CATEGORIES = [
    "electronics", "fashion", "home", "beauty", "sports", "books", "toys", "grocery",
]


@dataclass
class GenerateConfig:
    customers: int = 3000
    days: int = 240
    start: str = "2024-01-01"
    seed: int = 42
    categories: list[str] = field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    customers_per_chunk: int = 5000
    partitions: int = 0  # 0: one per chunk, capped at 4 x default parallelism

    def __post_init__(self) -> None:
        _require(self.customers > 0, "customers must be positive")
        _require(self.days > 0, "days must be positive")
        _require(self.seed >= 0, "seed must be zero or positive")
        _require(self.customers_per_chunk > 0, "customers_per_chunk must be positive")
        _require(len(set(self.categories)) == len(self.categories) > 0, "categories must be distinct and non-empty")
        _require((dt.date(9999, 12, 31) - parse_date(self.start, "start")).days >= self.days,
                 "start + days must end by 9999-12-31")


@dataclass
class FeaturesConfig:
    lookback_days: int = 365
    horizon_days: int = 90
    # Categories that get their own spend/views column; empty: the most frequent in the window.
    categories: list[str] = field(default_factory=list)
    max_categories: int = 12
    recent_days: int = 30
    max_line_amount: float = 1_000_000.0
    max_quantity: int = 10_000
    max_duration_s: float = 86_400.0
    output_format: str = "parquet"   # parquet (published partition by partition) or delta (replaceWhere)

    def __post_init__(self) -> None:
        _require(self.output_format in OUTPUT_FORMATS, f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
        _require(self.lookback_days > 0, "lookback_days must be positive")
        _require(self.horizon_days > 0, "horizon_days must be positive")
        _require(0 < self.recent_days <= self.lookback_days, "recent_days must be in 1..lookback_days")
        _require(self.max_categories > 0, "max_categories must be positive")


@dataclass
class ScoreConfig:
    engine: str = "numpy"          # numpy (no TensorFlow on executors) or keras (for comparison)
    batch_rows: int = 10_000       # rows per Arrow batch handed to the model
    output_format: str = "parquet"  # parquet or delta
    id_col: str = "customer_id"
    unique_ids: bool = True        # refuse a table with two rows for one id and date (a shuffle of the keys)
    file_tasks: bool = True        # a local feature table of ours, to local Parquet: tasks score its files with pyarrow
    explain: int = 0               # reason codes: the K input columns that raised each purchase score most (0: none)
    explain_steps: int = 4         # integrated-gradient steps behind each reason code (more: closer, dearer)
    drift: bool = True             # count each input's bins as it is scored: PSI against training in the manifest
    drift_bound: float = 0.25      # PSI past which an input column is named as drifted (a warning line)

    def __post_init__(self) -> None:
        _require(self.engine in ("numpy", "keras"), "engine must be numpy or keras")
        _require(self.batch_rows > 0, "batch_rows must be positive")
        _require(self.explain >= 0, "explain must be 0 (no reason codes) or a positive number of reasons")
        _require(self.explain_steps > 0, "explain_steps must be positive")
        _require(self.drift_bound > 0, "drift_bound must be positive")
        _require(self.output_format in OUTPUT_FORMATS, f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")


@dataclass
class DemoConfig:
    """The end-to-end demo: a generated shop, one cutoff, the whole pipeline."""

    customers: int = 5000
    days: int = 365
    start: str = "2024-01-01"
    seed: int = 42
    as_of: str = "2024-11-01"
    lookback_days: int = 180
    horizon_days: int = 60

    def __post_init__(self) -> None:
        _require(self.customers > 0 and self.days > 0, "customers and days must be positive")
        start, as_of = parse_date(self.start, "start"), parse_date(self.as_of, "as_of")
        _require(start < as_of, "as_of must fall after start")


def parse_date(value: str, what: str = "date") -> dt.date:
    """Parse a YYYY-MM-DD date (only that form: Python also reads ``20240701`` and ``2024-W27-1``)
    or raise ``ConfigError`` naming the argument."""
    text = str(value)
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a date in YYYY-MM-DD form") from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


C = TypeVar("C")


def load_config(cls: type[C], path: str | Path | Traversable | None = None,
                overrides: dict[str, Any] | None = None) -> C:
    """Build ``cls`` from a YAML file (default ``conf/<job>.yaml`` when present) and overrides.

    Overrides whose value is ``None`` (a flag not given) are ignored; unknown keys are an error.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = path if isinstance(path, Traversable) else Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of settings")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} for {cls.__name__}; known: {', '.join(sorted(known))}")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from None


def default_config_path(job: str) -> Path | Traversable | None:
    """``conf/<job>.yaml``: the checkout's when it is on disk, else the copy packaged inside
    ``retail_ann`` (``bin/build-package.sh`` puts it in the zip, ``setup.py`` in the wheel), which a
    driver started from the zip in cluster deploy mode can read with ``importlib.resources``."""
    p = CONF_DIR / f"{job}.yaml"
    if p.is_file():
        return p
    packaged = resources.files("retail_ann").joinpath(PACKAGED_CONF, f"{job}.yaml")
    return packaged if packaged.is_file() else None


TRAIN_TASKS = ("auto", "purchase", "spend", "both")
SPEND_TARGETS = ("two_stage", "poisson", "ziln", "log1p", "raw")
CALIBRATIONS = ("auto", *CALIBRATION_METHODS)


@dataclass
class TrainConfig:
    """``retail-ann train``: which targets, which columns, the MLPs and their training.

    ``task`` auto: ``purchase`` when ``label`` is given, else ``both`` when the table has
    ``will_purchase`` and ``future_spend``, else whichever of the two it has.
    """

    task: str = "auto"                 # auto | purchase | spend | both
    label: str | None = None           # binary purchase label (bool, 0/1, TRUE/FALSE); None: will_purchase
    spend_label: str | None = None     # spend label (numeric >= 0); None: future_spend
    id_col: str = "customer_id"        # never a feature; seeds the deterministic sample
    categorical: list[str] = field(default_factory=list)  # integer-coded columns to one-hot
    exclude: list[str] = field(default_factory=list)      # columns that are not features
    sample_rows: int = 200_000         # at most this many rows are sampled to the driver
    split: float = 0.2                 # held-out evaluation share (stratified for purchase)
    validation_split: float = 0.1      # share of the training rows for early stopping and the threshold
    epochs: int = 50
    batch_size: int = 32
    seed: int = 42
    split_seed: int | None = None      # seed of the sample, the split and the folds; None: seed
    hidden_units: list[int] = field(default_factory=lambda: [32, 16])
    dropout: float = 0.1
    l2: float = 0.001                  # L2 penalty on the hidden kernels
    learning_rate: float = 0.001
    ema_momentum: float = 0.0          # >0: validate and keep the moving average of the weights (Polyak averaging)
    patience: int = 8                  # early stopping on validation loss; the best epoch's weights are kept
    class_weight: bool = False         # balance classes in the loss (the output bias is corrected back)
    ensemble: int = 1                  # >1: this many MLPs per network, trained together, merged into one
    ensemble_validation: str = "shared"  # shared: all members hold back the same rows; folds: each its own
    threshold: float | None = None     # decision threshold; None: the F1-maximising one on validation rows
    calibration: str = "auto"          # auto (by cross-validated Brier on validation rows, see calibration.py) | none | platt | isotonic
    imputation: str = "median"         # median | mean | drop (drop rows with missing numeric values)
    skew_threshold: float = 1.0        # log-transform numeric columns whose training skewness exceeds this
    min_category_count: int = 10       # rarer levels fold into the unknown bucket
    max_levels: int = 50               # most levels one categorical column keeps
    ple_bins: int = 0                  # piecewise-linear encoding bins per numeric column (0: off)
    extrapolation: float = 0.5         # a scaled numeric input goes this share of its training range past the training maximum (0: saturates there)
    segment_columns: list[str] = field(default_factory=list)  # more columns to break the test metrics down by
    spend_target: str = "two_stage"    # two_stage: P(buy) x E[spend | buy] (Poisson net on buyers); poisson; ziln; log1p; raw (MSE)
    report: bool = True                # write report.html and its plots
    allow_incomplete_labels: bool = False  # train on partitions whose manifest says labels_complete: false

    def __post_init__(self) -> None:
        if isinstance(self.categorical, str):
            self.categorical = [c.strip() for c in self.categorical.split(",") if c.strip()]
        if isinstance(self.segment_columns, str):
            self.segment_columns = [c.strip() for c in self.segment_columns.split(",") if c.strip()]
        if isinstance(self.exclude, str):
            self.exclude = [c.strip() for c in self.exclude.split(",") if c.strip()]
        if isinstance(self.hidden_units, str):
            try:
                self.hidden_units = [int(u) for u in self.hidden_units.split(",") if u.strip()]
            except ValueError:
                raise ConfigError(f"hidden_units must be integers like 128,64, not {self.hidden_units!r}") from None
        _require(self.task in TRAIN_TASKS, f"task must be one of {', '.join(TRAIN_TASKS)}")
        _require(self.spend_target in SPEND_TARGETS, f"spend_target must be one of {', '.join(SPEND_TARGETS)}")
        _require(self.imputation in ("median", "mean", "drop"), "imputation must be median, mean or drop")
        _require(self.sample_rows > 0, "sample_rows must be positive")
        _require(0 < self.split < 1, "split must be between 0 and 1")
        _require(0 < self.validation_split < 1, "validation_split must be between 0 and 1")
        _require(self.epochs > 0 and self.batch_size > 0, "epochs and batch_size must be positive")
        _require(self.patience >= 0, "patience must be >= 0")
        _require(bool(self.hidden_units) and all(isinstance(u, int) and u > 0 for u in self.hidden_units),
                 "hidden_units must be a non-empty list of positive integers")
        _require(0 <= self.dropout < 1, "dropout must be in [0, 1)")
        _require(self.l2 >= 0 and self.learning_rate > 0, "l2 must be >= 0 and learning_rate positive")
        _require(0 <= self.ema_momentum < 1, "ema_momentum must be in [0, 1)")
        _require(self.threshold is None or 0 < self.threshold < 1, "threshold must be between 0 and 1")
        _require(self.calibration in CALIBRATIONS, f"calibration must be one of {', '.join(CALIBRATIONS)}")
        _require(self.min_category_count >= 1 and self.max_levels >= 1, "min_category_count and max_levels must be >= 1")
        _require(0 <= self.ple_bins <= 64, "ple_bins must be in 0..64")
        _require(0 <= self.extrapolation <= 10, "extrapolation must be in 0..10")
        _require(1 <= self.ensemble <= 16, "ensemble must be in 1..16")
        _require(self.ensemble_validation in ("shared", "folds"), "ensemble_validation must be shared or folds")
        _require(self.split_seed is None or self.split_seed >= 0, "split_seed must be zero or positive")

    @property
    def data_seed(self) -> int:
        """The seed that picks rows (sample, split, folds); ``seed`` alone seeds the networks."""
        return self.seed if self.split_seed is None else self.split_seed
