"""Dates in a format's own pattern, rewritten for ``schemas.split_valid``."""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def parse_timestamp(text: Column, patterns: list[str]) -> Column:
    """``text`` as a timestamp by the first of ``patterns`` (Spark datetime patterns) that parses it;
    null when none does."""
    return F.coalesce(*[F.try_to_timestamp(text, F.lit(p)) for p in patterns])


def iso_timestamp(text: Column, patterns: list[str]) -> Column:
    """``text`` as ``yyyy-MM-dd HH:mm:ss`` when one of ``patterns`` parses it; else the text itself,
    which validation rejects as unparseable, keeping it."""
    return F.coalesce(F.date_format(parse_timestamp(text, patterns), "yyyy-MM-dd HH:mm:ss"), text)
