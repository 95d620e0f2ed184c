"""Job configuration as data: one dataclass per job, loaded from ``conf/<job>.yaml`` and overridden
by CLI flags. Dataclass defaults equal the shipped YAML (a test keeps them in step)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from retail_ann.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

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
        parse_date(self.start, "start")


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

    def __post_init__(self) -> None:
        _require(self.lookback_days > 0, "lookback_days must be positive")
        _require(self.horizon_days > 0, "horizon_days must be positive")
        _require(0 < self.recent_days <= self.lookback_days, "recent_days must be in 1..lookback_days")
        _require(self.max_categories > 0, "max_categories must be positive")


def parse_date(value: str, what: str = "date"):
    """Parse YYYY-MM-DD or raise ``ConfigError`` naming the argument."""
    import datetime as dt

    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a date in YYYY-MM-DD form") from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


C = TypeVar("C")


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build ``cls`` from a YAML file (default ``conf/<job>.yaml`` when present) and overrides.

    Overrides whose value is ``None`` (a flag not given) are ignored; unknown keys are an error.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
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


def default_config_path(job: str) -> Path | None:
    """``conf/<job>.yaml`` when the repository's conf directory is present."""
    p = CONF_DIR / f"{job}.yaml"
    return p if p.exists() else None
