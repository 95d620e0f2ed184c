"""Category names as columns: a category folded as validation keeps it, and the column-safe name
of each per-category feature. Plain Python (no Spark), so anything that names the columns the
features job writes (a benchmark's peer, a notebook) uses these rules, not a copy of them."""
from __future__ import annotations

import hashlib
import re
from collections import Counter

from retail_ann.errors import InputError

OTHER_CATEGORIES = "other_categories"
MAX_SLUG = 40   # characters of a category in its column name; a longer one is cut and hashed


def fold_category(category: str) -> str:
    """A category as validation keeps it: lower case, runs of white space one space, trimmed
    (``schemas.fold_category`` does the same in Spark), so ``Books`` and ``books `` are one."""
    return " ".join(str(category).lower().split())


def category_slug(category: str) -> str:
    """A column-safe name for a category: lower case, runs of other characters become ``_``. A name
    with characters outside ASCII, or longer than ``MAX_SLUG``, gets a short hash of the name
    instead of what the slug loses, so two such names stay two columns (and a 100 KB name one
    short column)."""
    slug = re.sub(r"[^0-9a-z]+", "_", category.strip().lower()).strip("_")
    if category.isascii() and 0 < len(slug) <= MAX_SLUG:
        return slug
    return f"{slug[:MAX_SLUG - 9].rstrip('_') or 'c'}_{_short_hash(category)}"


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def category_columns(prefix: str, categories: list[str]) -> dict[str, str]:
    """Map each category to its column name. Categories whose slugs collide (``home & garden`` and
    ``home garden``), or a slug equal to the remainder column's, take a short hash of their name."""
    slugs = {c: category_slug(c) for c in categories}
    counts = Counter(slugs.values())
    names = {}
    for c, slug in slugs.items():
        if counts[slug] > 1 or slug == OTHER_CATEGORIES:
            slug = f"{slug[:MAX_SLUG - 9]}_{_short_hash(c)}"
        names[c] = prefix + slug
    if len(set(names.values())) != len(names):   # only for two categories with one hash prefix and slug
        raise InputError(f"categories {categories} collide once made column-safe")
    return names
