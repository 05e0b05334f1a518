"""Covering designs: the default run meets every value of each axis of a product once,
``--run-slow`` runs the whole product.

A check over ``rows × columns`` where each row and each column exercises its own code
(a factory, a shape handled by shared code) proves each of them in ``len(rows)`` cases
instead of ``len(rows) * len(columns)``; the remaining pairs carry ``pytest.mark.slow``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def rotation(rows: Sequence[Any], columns: Sequence[Any], row_ids: Sequence[str],
             column_ids: Sequence[str]) -> list:
    """``pytest.param(*row, *column)`` for every pair: row ``i`` meets column
    ``i mod len(columns)`` in the default run (so every row, and every column when
    there are at least as many rows), every other pair is marked slow."""
    if len(rows) < len(columns):
        raise ValueError(f"rotation needs at least as many rows ({len(rows)}) as columns "
                         f"({len(columns)}) to meet every column")
    return [pytest.param(*_as_tuple(row), *_as_tuple(column),
                         id=f"{row_id}-{column_id}",
                         marks=() if j == i % len(columns) else pytest.mark.slow)
            for i, (row, row_id) in enumerate(zip(rows, row_ids, strict=True))
            for j, (column, column_id) in enumerate(zip(columns, column_ids, strict=True))]
