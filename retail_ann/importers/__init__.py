"""Importers: public retail logs → the canonical tables of ``schemas`` (transactions, customers).

One module per format. Each has ``read(spark, path)`` (the raw rows, text columns, with the
reader's ``_corrupt_record`` for a malformed line) and ``to_tables(raw)``: a pure transform to
canonical column names (``customers`` may be absent). Dates are rewritten from the format's own
pattern to ISO text, so ``schemas.split_valid`` parses them and, for text that is no date, keeps it
and says "unparseable ts". ``pipeline.run_import`` validates and writes the tables.
"""
from __future__ import annotations

from types import ModuleType

from retail_ann.importers import cdnow, online_retail

FORMATS: dict[str, ModuleType] = {"online-retail": online_retail, "cdnow": cdnow}
