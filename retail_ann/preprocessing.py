"""``FeatureSpec``: the preprocessing learned on training rows and applied unchanged at scoring.

Fit once on the training rows (``FeatureSpec.fit``), store as JSON inside the model artifact
(``to_json`` / ``from_json``), apply to any batch (``transform``): a pandas DataFrame, a pyarrow
RecordBatch or a pyarrow Table. Transform uses numpy, pandas and pyarrow only (no TensorFlow, no
scikit-learn), is vectorised, and gives bit-identical float32 arrays for the same rows whichever
container they come in; it is what the scorer runs on Spark executors inside ``mapInArrow``.

Numeric columns, in this order:
  1. missing: null, NaN, +-inf and (for string inputs) unparseable values are missing and replaced
     by the training median (``imputation="median"``) or mean (``"mean"``). With ``"drop"`` the
     training job drops rows with a missing numeric value before fitting; at scoring time no row can
     be dropped, so the training median is used.
  2. log: a column whose imputed training values have skewness > ``skew_threshold`` (default 1.0,
     the usual "highly skewed" cut) and more than two distinct values is log-transformed:
     ``y = log1p(max(x - shift, 0) / scale)`` with ``shift = min(0, training min)`` (so columns that
     encode "missing" as -1 still qualify) and ``scale`` = the training median of the positive
     values of ``x - shift`` (so the log bends where the data lives, whatever the unit: seconds,
     counts or rates). The decision and its statistics are recorded per column. ``transform``
     works in float32 on one ``(columns, rows)`` block and computes the log as ``log(1 + .)``,
     which numpy vectorises (``log1p`` it does not); its absolute error is at most float32's
     rounding of ``1 + x`` (6e-8).
  3. min-max: ``(y - lo) / (hi - lo)`` with ``lo``/``hi`` from the training rows, clipped at
     transform time to [0, 1 + ``extrapolation``]: a value below the training range saturates, one
     above it goes on for at most ``extrapolation`` (``TrainConfig.extrapolation``, 0.5; 0 when
     not given) of the training range before it saturates (the largest customers are the ones
     most likely to lie beyond the training rows, and the ones whose spend matters most). A column
     constant on the training rows is dropped (listed in ``dropped``).
  4. indicators: ``<col>>0`` for zero-inflated heavy-tailed columns (log-transformed and 5-95 % of
     training values exactly 0, e.g. PageValues); ``<col>_missing`` when at least
     ``missing_indicator_min`` (1 %) of the training values were missing.
  5. piecewise-linear encoding (optional, ``ple_bins`` > 0; Gorishniy et al. 2022, "On Embeddings
     for Numerical Features in Tabular Deep Learning"): the scaled value ``z`` is also encoded
     over bins cut at training quantiles ``e_0 < e_1 < ... < e_b`` as ``<col>#k`` =
     ``clip((z - e_k) / (e_{k+1} - e_k), 0, 1)`` -- 1 for bins below ``z``, the fraction of
     ``z``'s own bin, 0 above. An MLP then needs no hidden units to bend a feature's effect.
     Edges are observed values (so a two-valued column gets no bins: it needs none).

Categorical columns (strings, booleans, and integer-coded columns named in ``categorical``): values
are normalised to string keys (``1``, ``1.0`` and ``"1"`` are the same level; booleans are
``true``/``false``; a missing value is the level ``__missing__``), one-hot encoded over the levels
seen at least ``min_category_count`` times in training (at most ``max_levels``, most frequent
first), plus a last ``<col>=__unknown__`` column that takes rare, unseen and (when too rare to be a
level of its own) missing values.

``targets`` is a small model-meta section that training fills in (decision threshold for the
purchase label, spend target transform); the spec itself never reads it. ``profile`` holds each
input's distribution on the training rows, for drift at scoring (``retail_ann.drift``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SPEC_FORMAT = 1

MISSING_LEVEL = "__missing__"
UNKNOWN_LEVEL = "__unknown__"

NUMERIC = "numeric"
CATEGORICAL = "categorical"
BOOLEAN = "boolean"

IMPUTATIONS = ("median", "mean", "drop")
MISSING_SHOWN = 5   # missing input columns a schema check names (the rest are counted)
# Numeric statistics are fitted on values clipped to a quarter of float32's range: ``transform``
# works in float32 (larger inputs saturate there), and lo, hi and their span must stay finite in it.
_FIT_LIMIT = float(np.finfo(np.float32).max) / 4

_TRUE_WORDS = {"true", "t", "yes", "y", "1"}
_FALSE_WORDS = {"false", "f", "no", "n", "0"}

# Type names (Spark simpleString, Arrow str(type), pandas dtype) that a numeric input accepts.
_NUMERIC_TYPES = {
    "tinyint", "smallint", "int", "integer", "bigint", "long", "short", "byte", "float", "double",
    "real", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "halffloat",
    "float16", "float32", "float64", "boolean", "bool", "void", "null",
}
_NUMERIC_PREFIXES = ("decimal", "int", "uint", "float", "double")
_TEXT_TYPES = {"string", "large_string", "utf8", "large_utf8", "object", "category", "str"}
_TEXT_PREFIXES = ("varchar", "char", "dictionary", "string")


@dataclass
class NumericFeature:
    """One numeric input column and everything needed to transform it."""

    name: str
    impute: float
    log: bool = False
    shift: float = 0.0
    scale: float = 1.0
    lo: float = 0.0
    hi: float = 1.0
    positive_indicator: bool = False
    missing_indicator: bool = False
    skew: float = 0.0
    missing_fraction: float = 0.0
    ple_edges: list[float] = field(default_factory=list)   # bin edges of the scaled value; [] = none

    def output_names(self) -> list[str]:
        names = [self.name]
        if self.positive_indicator:
            names.append(f"{self.name}>0")
        if self.missing_indicator:
            names.append(f"{self.name}_missing")
        return names

    def ple_names(self) -> list[str]:
        return [f"{self.name}#{k}" for k in range(max(len(self.ple_edges) - 1, 0))]


@dataclass
class CategoricalFeature:
    """One categorical input column: its kept levels (one-hot order) and whether it is boolean."""

    name: str
    levels: list[str]
    boolean: bool = False

    def output_names(self) -> list[str]:
        return [f"{self.name}={lv}" for lv in self.levels] + [f"{self.name}={UNKNOWN_LEVEL}"]


class _NumericLayout(NamedTuple):
    """The numeric block of a spec as arrays, for a vectorised transform. Block rows follow
    ``order`` (log-transformed columns first, so they form one contiguous slice); parameters are
    float32 column vectors that broadcast over a ``(columns, rows)`` block; ``*_cols`` say where
    each block row's outputs land in the feature matrix."""

    order: list[NumericFeature]
    n_log: int
    impute: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    lo: np.ndarray
    span: np.ndarray
    value_cols: np.ndarray
    positive_rows: np.ndarray
    positive_cols: np.ndarray
    missing_rows: np.ndarray
    missing_cols: np.ndarray
    ple_rows: np.ndarray
    ple_lo: np.ndarray
    ple_width: np.ndarray
    ple_cols: np.ndarray
    width: int

    @classmethod
    def of(cls, features: list[NumericFeature]) -> "_NumericLayout":
        first_col, j = {}, 0
        for f in features:  # output columns in feature_names order: value blocks, then PLE blocks
            first_col[f.name] = j
            j += 1 + f.positive_indicator + f.missing_indicator
        first_ple = {}
        for f in features:
            first_ple[f.name] = j
            j += len(f.ple_names())
        order = [f for f in features if f.log] + [f for f in features if not f.log]
        positive = [(i, first_col[f.name] + 1) for i, f in enumerate(order) if f.positive_indicator]
        missing = [(i, first_col[f.name] + 1 + f.positive_indicator) for i, f in enumerate(order) if f.missing_indicator]
        ple = [(i, e0, e1 - e0, first_ple[f.name] + k) for i, f in enumerate(order)
               for k, (e0, e1) in enumerate(zip(f.ple_edges[:-1], f.ple_edges[1:]))]

        def param(values: Iterable[float]) -> np.ndarray:
            return np.array(list(values), dtype=np.float32).reshape(-1, 1)

        def index(values: Iterable[int]) -> np.ndarray:
            return np.array(list(values), dtype=np.intp)

        return cls(
            order=order, n_log=sum(f.log for f in order),
            impute=param(f.impute for f in order), shift=param(f.shift for f in order),
            scale=param(f.scale for f in order), lo=param(f.lo for f in order),
            span=param(f.hi - f.lo for f in order), value_cols=index(first_col[f.name] for f in order),
            positive_rows=index(r for r, _ in positive), positive_cols=index(c for _, c in positive),
            missing_rows=index(r for r, _ in missing), missing_cols=index(c for _, c in missing),
            ple_rows=index(p[0] for p in ple), ple_lo=param(p[1] for p in ple), ple_width=param(p[2] for p in ple),
            ple_cols=index(p[3] for p in ple), width=j,
        )

    def gather(self, getter, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw numeric inputs as a float32 ``(columns, rows)`` block and its missing mask
        (null, NaN, +-inf; values beyond float32's range saturate to inf and are clipped later)."""
        x = np.empty((len(self.order), n), dtype=np.float32)
        missing = np.empty((len(self.order), n), dtype=bool)
        with np.errstate(over="ignore", invalid="ignore"):
            for i, f in enumerate(self.order):
                col = getter.numeric(f.name)
                np.isfinite(col, out=missing[i])
                x[i] = col
        np.logical_not(missing, out=missing)
        return x, missing


@dataclass
class FeatureSpec:
    """Fitted preprocessing: numeric then categorical blocks, in ``feature_names`` order."""

    numeric: list[NumericFeature] = field(default_factory=list)
    categorical: list[CategoricalFeature] = field(default_factory=list)
    imputation: str = "median"
    options: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    n_rows: int = 0
    targets: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)   # training distributions (drift.fit_profile)

    # ----------------------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        numeric: Iterable[str] | None = None,
        categorical: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        imputation: str = "median",
        skew_threshold: float = 1.0,
        min_category_count: int = 10,
        max_levels: int = 50,
        missing_indicator_min: float = 0.01,
        positive_indicator: bool = True,
        ple_bins: int = 0,
        extrapolation: float = 0.0,
    ) -> "FeatureSpec":
        """Learn the spec from training rows ``df`` (and nothing else).

        Column roles: when ``numeric`` is None every numeric (non-boolean) column not named in
        ``categorical`` or ``exclude`` is numeric; when ``categorical`` is None the string, boolean
        and pandas-categorical columns are categorical, plus any named in ``categorical``.
        Other columns (dates, timestamps, nested) are ignored and listed in ``dropped``.
        """
        if imputation not in IMPUTATIONS:
            raise ValueError(f"imputation must be one of {', '.join(IMPUTATIONS)}, not {imputation!r}")
        if len(df) == 0:
            raise ValueError("cannot fit a FeatureSpec on zero rows")
        excluded = set(exclude)
        cat_given = list(categorical) if categorical is not None else []
        num_cols, cat_cols, dropped = _column_roles(df, numeric, cat_given, excluded)
        spec = cls(
            imputation=imputation,
            options={
                "skew_threshold": skew_threshold,
                "min_category_count": min_category_count,
                "max_levels": max_levels,
                "missing_indicator_min": missing_indicator_min,
                "positive_indicator": positive_indicator,
                "ple_bins": ple_bins,
                "extrapolation": extrapolation,
            },
            dropped=dropped,
            n_rows=int(len(df)),
        )
        for name in num_cols:
            feat = _fit_numeric(name, numeric_values(df[name]), imputation, skew_threshold,
                                missing_indicator_min, positive_indicator)
            if feat is None:
                spec.dropped[name] = "constant or entirely missing on the training rows"
            else:
                spec.numeric.append(feat)
        for name in cat_cols:
            spec.categorical.append(_fit_categorical(name, df[name], min_category_count, max_levels))
        if not spec.numeric and not spec.categorical:
            raise ValueError("no usable feature columns")
        if ple_bins > 0 and spec.numeric:
            spec._fit_ple(df, ple_bins)
        return spec

    def _fit_ple(self, df: pd.DataFrame, bins: int) -> None:
        """Bin edges at quantiles of each scaled numeric column on the training rows ``df``."""
        x = self.transform(df)
        names = self.feature_names
        for f in self.numeric:
            z = x[:, names.index(f.name)].astype(np.float64)
            edges = np.unique(np.quantile(z, np.linspace(0.0, 1.0, bins + 1), method="inverted_cdf"))
            f.ple_edges = [float(e) for e in edges] if len(edges) >= 3 else []

    # ------------------------------------------------------------------------------ properties
    @property
    def feature_names(self) -> list[str]:
        """Names of the output columns of ``transform``, in order."""
        names: list[str] = []
        for f in self.numeric:
            names += f.output_names()
        for f in self.numeric:
            names += f.ple_names()
        for c in self.categorical:
            names += c.output_names()
        return names

    @property
    def extrapolation(self) -> float:
        """How far past the training maximum a scaled numeric input goes, in training ranges (0
        for a spec written before the option: it saturated there)."""
        return float(self.options.get("extrapolation", 0.0))

    @property
    def input_blocks(self) -> dict[str, list[int]]:
        """Each input column's output columns of ``transform`` (its value, flags, PLE bins or
        one-hot levels), by position: what permuting that input permutes."""
        blocks: dict[str, list[int]] = {}
        position = 0
        for source, names in ([(f.name, f.output_names()) for f in self.numeric]
                              + [(f.name, f.ple_names()) for f in self.numeric]
                              + [(c.name, c.output_names()) for c in self.categorical]):
            blocks.setdefault(source, []).extend(range(position, position + len(names)))
            position += len(names)
        return blocks

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def input_columns(self) -> dict[str, str]:
        """Input column name -> expected kind (``numeric``, ``categorical`` or ``boolean``)."""
        cols = {f.name: NUMERIC for f in self.numeric}
        cols.update({c.name: BOOLEAN if c.boolean else CATEGORICAL for c in self.categorical})
        return cols

    # ------------------------------------------------------------------------------- transform
    def transform(self, batch: pd.DataFrame | pa.RecordBatch | pa.Table) -> np.ndarray:
        """Rows of ``batch`` -> float32 array ``(n_rows, n_features)``. Extra columns are ignored;
        a missing input column raises ``KeyError`` (check with ``check_schema`` first)."""
        getter = _column_getter(batch)
        n = batch.num_rows if isinstance(batch, (pa.RecordBatch, pa.Table)) else len(batch)
        out = np.zeros((self.n_features, n), dtype=np.float32).T  # column-major: each feature is contiguous
        layout = _NumericLayout.of(self.numeric)
        if self.numeric:
            x, missing = layout.gather(getter, n)
            # in place on one float32 (columns, rows) block; log columns come first (layout.order)
            np.copyto(x, layout.impute, where=missing)
            positive = x[layout.positive_rows] > 0
            v = x[:layout.n_log]
            v -= layout.shift[:layout.n_log]
            np.maximum(v, 0.0, out=v)
            v /= layout.scale[:layout.n_log]
            v += 1.0
            np.log(v, out=v)  # log(1 + .) in float32: vectorised, unlike np.log1p
            x -= layout.lo
            x /= layout.span
            np.clip(x, 0.0, 1.0 + self.extrapolation, out=x)
            out[:, layout.value_cols] = x.T
            if len(layout.ple_rows):
                bins = x[layout.ple_rows]
                bins -= layout.ple_lo
                bins /= layout.ple_width
                out[:, layout.ple_cols] = np.clip(bins, 0.0, 1.0, out=bins).T
            out[:, layout.positive_cols] = positive.T
            out[:, layout.missing_cols] = missing[layout.missing_rows].T
        j = layout.width
        for c in self.categorical:
            codes = _level_codes(*getter.factorize(c.name), c)
            out[np.arange(n), j + codes] = 1.0
            j += len(c.levels) + 1
        return out

    def check_schema(self, column_types: Mapping[str, str]) -> list[str]:
        """Problems scoring a table with these column types would meet (empty list: fine).

        ``column_types`` maps column name -> type name as Spark (``df.schema.simpleString`` style:
        ``double``, ``int``, ``decimal(10,2)``), Arrow (``int64``, ``large_string``) or pandas
        (``float64``, ``object``) writes it; ``column_types_of`` builds it from a schema.
        """
        problems, missing = [], []
        for name, kind in self.input_columns.items():
            if name not in column_types:
                missing.append(name)
                continue
            t = str(column_types[name]).strip().lower()
            if kind == NUMERIC and not _is_numeric_type(t):
                problems.append(f"column {name} is {t}, expected a numeric type")
            elif kind != NUMERIC and not (_is_numeric_type(t) or _is_text_type(t)):
                problems.append(f"column {name} is {t}, expected a string, boolean or integer type")
        if missing:   # a wrong table lacks most of them: the first few and how many
            shown = ", ".join(missing[:MISSING_SHOWN]) + (", ..." if len(missing) > MISSING_SHOWN else "")
            problems.insert(0, f"{len(missing)} of its {len(self.input_columns)} input columns missing ({shown})")
        return problems

    # ---------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SPEC_FORMAT,
            "imputation": self.imputation,
            "options": dict(self.options),
            "numeric": [asdict(f) for f in self.numeric],
            "categorical": [asdict(c) for c in self.categorical],
            "dropped": dict(self.dropped),
            "n_rows": self.n_rows,
            "feature_names": self.feature_names,
            "targets": self.targets,
            "profile": self.profile,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureSpec":
        if d.get("format") != SPEC_FORMAT:
            raise ValueError(f"unsupported feature spec format {d.get('format')!r} (expected {SPEC_FORMAT})")
        spec = cls(
            numeric=[NumericFeature(**f) for f in d["numeric"]],
            categorical=[CategoricalFeature(**c) for c in d["categorical"]],
            imputation=d.get("imputation", "median"),
            options=dict(d.get("options", {})),
            dropped=dict(d.get("dropped", {})),
            n_rows=int(d.get("n_rows", 0)),
            targets=dict(d.get("targets", {})),
            profile=dict(d.get("profile", {})),
        )
        names = d.get("feature_names")
        if names is not None and names != spec.feature_names:
            raise ValueError("feature spec is inconsistent: stored feature_names differ from the columns")
        return spec

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        return cls.from_dict(json.loads(text))

    def reference_row(self) -> pa.Table:
        """One row of the training rows' typical customer: each numeric input at its imputation
        value (the median unless ``imputation="mean"``), each categorical at its most frequent
        level (reason codes measure from it)."""
        columns = {f.name: pa.array([f.impute], pa.float64()) for f in self.numeric}
        columns.update({c.name: pa.array([c.levels[0] if c.levels else None], pa.string())
                        for c in self.categorical})
        return pa.table(columns)


# ------------------------------------------------------------------------------ schema helpers
def column_types_of(schema: Any) -> dict[str, str]:
    """Column name -> type name from a Spark ``StructType``/DataFrame, an Arrow schema/batch/table
    or a pandas DataFrame, for ``FeatureSpec.check_schema``."""
    if isinstance(schema, pd.DataFrame):
        return {str(c): str(t) for c, t in schema.dtypes.items()}
    if isinstance(schema, (pa.RecordBatch, pa.Table)):
        schema = schema.schema
    if isinstance(schema, pa.Schema):
        return {f.name: str(f.type) for f in schema}
    struct = getattr(schema, "schema", schema)  # a Spark DataFrame has .schema
    return {f.name: f.dataType.simpleString() for f in struct.fields}


def _is_numeric_type(t: str) -> bool:
    return t in _NUMERIC_TYPES or t.startswith(_NUMERIC_PREFIXES) or t == "object"


def _is_text_type(t: str) -> bool:
    return t in _TEXT_TYPES or t.startswith(_TEXT_PREFIXES)


# ------------------------------------------------------------------------------------ fitting
def _column_roles(
    df: pd.DataFrame, numeric: Iterable[str] | None, categorical: list[str], excluded: set[str]
) -> tuple[list[str], list[str], dict[str, str]]:
    for name in list(categorical) + list(numeric or []):
        if name not in df.columns:
            raise KeyError(f"column {name} is not in the training rows")
    cat_set = set(categorical)
    num_cols: list[str] = []
    cat_cols: list[str] = []
    dropped: dict[str, str] = {}
    num_given = set(numeric) if numeric is not None else None
    for name in df.columns:
        if name in excluded:
            continue
        s = df[name]
        if name in cat_set:
            cat_cols.append(name)
        elif num_given is not None:
            if name in num_given:
                num_cols.append(name)
        elif pd.api.types.is_bool_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype) \
                or pd.api.types.is_string_dtype(s) or s.dtype == object:
            cat_cols.append(name)
        elif pd.api.types.is_numeric_dtype(s):
            num_cols.append(name)
        else:
            dropped[name] = f"unsupported type {s.dtype}"
    return num_cols, cat_cols, dropped


def _fit_numeric(
    name: str, raw: np.ndarray, imputation: str, skew_threshold: float,
    missing_indicator_min: float, positive_indicator: bool,
) -> NumericFeature | None:
    finite = np.isfinite(raw)
    values = np.clip(raw[finite], -_FIT_LIMIT, _FIT_LIMIT)
    if values.size == 0:
        return None
    impute = float(np.mean(values)) if imputation == "mean" else float(np.median(values))
    x = np.where(finite, np.clip(raw, -_FIT_LIMIT, _FIT_LIMIT), impute)
    missing_fraction = float(1.0 - finite.mean())
    n_distinct = np.unique(x).size
    if n_distinct < 2:
        return None
    skew = float(pd.Series(x).skew()) if x.size > 2 else 0.0
    skew = skew if math.isfinite(skew) else 0.0
    feat = NumericFeature(name=name, impute=impute, skew=round(skew, 6), missing_fraction=round(missing_fraction, 6))
    if skew > skew_threshold and n_distinct > 2:
        feat.log = True
        feat.shift = min(0.0, float(x.min()))
        shifted = x - feat.shift
        pos = shifted[shifted > 0]
        feat.scale = float(np.median(pos)) if pos.size else 1.0
        zero_fraction = float(np.mean(x == 0))
        feat.positive_indicator = positive_indicator and 0.05 <= zero_fraction <= 0.95
        y = np.log1p(np.maximum(shifted, 0.0) / feat.scale)
    else:
        y = x
    feat.lo, feat.hi = float(y.min()), float(y.max())
    if not feat.hi > feat.lo:
        return None
    feat.missing_indicator = imputation != "drop" and missing_fraction >= missing_indicator_min and missing_fraction > 0
    return feat


def _fit_categorical(name: str, s: pd.Series, min_count: int, max_levels: int) -> CategoricalFeature:
    boolean = _looks_boolean(s)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    keys = [_norm_key(u, boolean) for u in uniques]
    counts: dict[str, int] = {}
    per_code = np.bincount(codes[codes >= 0], minlength=len(uniques)) if len(uniques) else np.zeros(0, int)
    for key, cnt in zip(keys, per_code):
        counts[key] = counts.get(key, 0) + int(cnt)
    n_missing = int(np.sum(codes < 0))
    if n_missing:
        counts[MISSING_LEVEL] = counts.get(MISSING_LEVEL, 0) + n_missing
    kept = sorted((k for k, c in counts.items() if c >= min_count), key=lambda k: (-counts[k], k))
    return CategoricalFeature(name=name, levels=kept[:max_levels], boolean=boolean)


def _looks_boolean(s: pd.Series) -> bool:
    """Booleans, or text that is only true/false (any case), e.g. a CSV's TRUE/FALSE."""
    if pd.api.types.is_bool_dtype(s):
        return True
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        uniq = pd.unique(s.dropna())
        if len(uniq) == 0 or len(uniq) > 16:
            return False
        if all(isinstance(v, (bool, np.bool_)) for v in uniq):
            return True
        return all(isinstance(v, str) and v.strip().lower() in ("true", "false") for v in uniq)
    return False


# ----------------------------------------------------------------------------------- transform
class _PandasColumns:
    def __init__(self, df: pd.DataFrame):
        self.df = df

    def numeric(self, name: str) -> np.ndarray:
        return numeric_values(self.df[name])

    def factorize(self, name: str) -> tuple[np.ndarray, list]:
        codes, uniques = pd.factorize(self.df[name], use_na_sentinel=True)
        return codes, list(uniques)


class _ArrowColumns:
    def __init__(self, batch: pa.RecordBatch | pa.Table):
        self.batch = batch
        self.names = set(batch.schema.names)

    def _col(self, name: str):
        if name not in self.names:
            raise KeyError(name)
        return self.batch.column(name)

    def numeric(self, name: str) -> np.ndarray:
        col = self._col(name)
        t = col.type
        if pa.types.is_integer(t) or pa.types.is_floating(t):  # nulls come out as NaN
            return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        if pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
            arr = pc.fill_null(pc.cast(col, pa.float64(), safe=False), np.nan)
            return np.asarray(arr.to_numpy(), dtype=np.float64)
        return numeric_values(col.to_pandas())

    def factorize(self, name: str) -> tuple[np.ndarray, list]:
        col = self._col(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        encoded = col.dictionary_encode()
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp, copy=False)
        return codes, encoded.dictionary.to_pylist()


def _column_getter(batch):
    if isinstance(batch, pd.DataFrame):
        return _PandasColumns(batch)
    if isinstance(batch, (pa.RecordBatch, pa.Table)):
        return _ArrowColumns(batch)
    raise TypeError(f"transform expects a pandas DataFrame or a pyarrow RecordBatch/Table, not {type(batch).__name__}")


def numeric_values(s: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for every missing value (null, NaN, inf, unparseable)."""
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    x = np.array(x, dtype=np.float64, copy=True)
    x[~np.isfinite(x)] = np.nan
    return x


def _norm_key(value: Any, boolean: bool) -> str:
    """One raw category value -> its string key (see the module docstring)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING_LEVEL
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (bool, np.bool_)):
        key = "true" if value else "false"
    elif isinstance(value, (int, np.integer)):
        key = str(int(value))
    elif isinstance(value, str):
        key = value.strip()
        if key == "":
            return MISSING_LEVEL
    else:
        try:
            f = float(value)
        except (TypeError, ValueError):
            key = str(value)
        else:
            if not math.isfinite(f):
                return MISSING_LEVEL
            key = str(int(f)) if f.is_integer() else repr(f)
    if boolean:
        low = key.lower()
        if low in _TRUE_WORDS:
            return "true"
        if low in _FALSE_WORDS:
            return "false"
    return key


def numeric_column(batch, name: str) -> np.ndarray:
    """Input column ``name`` of a pandas or Arrow batch as float64 (the values ``transform``
    reads): NaN where missing; anything not finite is missing to ``transform``."""
    return _column_getter(batch).numeric(name)


def category_positions(batch, c: CategoricalFeature) -> np.ndarray:
    """Each row's one-hot column within ``c``'s block (``len(c.levels)``: the unknown bucket)."""
    return _level_codes(*_column_getter(batch).factorize(c.name), c)


def _level_codes(codes: np.ndarray, uniques: list, c: CategoricalFeature) -> np.ndarray:
    """Index of each value's one-hot column within the block (``len(levels)`` is unknown), from a
    factorization of the column: ``codes`` index ``uniques``, -1 is missing."""
    unknown = len(c.levels)
    position = {lv: i for i, lv in enumerate(c.levels)}
    lookup = np.array([position.get(_norm_key(u, c.boolean), unknown) for u in uniques] +
                      [position.get(MISSING_LEVEL, unknown)], dtype=np.int64)
    # code -1 (missing) indexes the last lookup entry
    return lookup[codes]
