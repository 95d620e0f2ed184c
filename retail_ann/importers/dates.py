"""Dates in a format's own pattern, rewritten for ``schemas.split_valid``."""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def iso_timestamp(text: Column, patterns: list[str]) -> Column:
    """``text`` as ``yyyy-MM-dd HH:mm:ss`` when one of ``patterns`` (Spark datetime patterns, tried
    in order) parses it; else the text itself, which validation rejects as unparseable, keeping it."""
    parsed = F.coalesce(*[F.try_to_timestamp(text, F.lit(p)) for p in patterns])
    return F.coalesce(F.date_format(parsed, "yyyy-MM-dd HH:mm:ss"), text)
