"""A set of row positions of one table, held as one bit per row.

The data gate marks the rows it sets aside by their position in the table's scan. However
many rows that is (a backtest before most of the data sets aside most of it, a table whose
rows all share one id sets aside all of them), the set costs an eighth of a byte per row
read, and later scans test membership with one vectorised lookup per batch of rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl


class RowSet:
    """Row positions ``0 .. size - 1`` of one table, as a bitmap."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._bits = np.zeros(size // 8 + 1, dtype=np.uint8)

    def add(self, positions: pl.Series | np.ndarray) -> None:
        """Add the positions (repeats are harmless)."""
        at = self._positions(positions)
        np.bitwise_or.at(self._bits, at >> 3, np.left_shift(1, at & 7).astype(np.uint8))

    def add_batches(self, batches: Iterable[pl.DataFrame], column: str) -> None:
        """Add the positions in `column` of every batch (a query's result, streamed)."""
        for batch in batches:
            self.add(batch.get_column(column))

    def contains(self, positions: pl.Series | np.ndarray) -> np.ndarray:
        """Whether each position is in the set, as a boolean array."""
        at = self._positions(positions)
        return ((self._bits[at >> 3] >> (at & 7)) & 1).astype(bool)

    def any_between(self, start: int, stop: int) -> bool:
        """Whether a position in ``start .. stop - 1`` may be in the set: exact at the edges
        of whole bytes, so a range may answer True for a set position up to 7 rows outside."""
        return stop > start and bool(self._bits[start >> 3 : ((stop - 1) >> 3) + 1].any())

    def __len__(self) -> int:
        return int(np.bitwise_count(self._bits).sum())

    def __bool__(self) -> bool:
        return bool(self._bits.any())

    def union(self, other: RowSet) -> RowSet:
        if other.size != self.size:
            raise ValueError(f"row sets of {self.size} and {other.size} rows")
        joined = RowSet(self.size)
        joined._bits = self._bits | other._bits
        return joined

    def positions(self) -> np.ndarray:
        """The positions in the set, ascending (memory: the set positions, not the size)."""
        held = np.flatnonzero(self._bits)
        bits = np.unpackbits(self._bits[held], bitorder="little").reshape(-1, 8)
        rows, offsets = np.nonzero(bits)
        return held[rows] * 8 + offsets

    def expr(self, column: str) -> pl.Expr:
        """Boolean expression: is the position in `column` (the row index type) in the set?

        A set of few positions (their list no larger than the bitmap: one in 64 rows) is a
        native ``is_in``, which a scan evaluates several times faster than a Python function;
        a larger one looks each batch up in the bitmap, element-wise, so the streaming engine
        evaluates it batch by batch."""
        if len(self) <= self.size // 64:
            listed = pl.Series(column, self.positions(), dtype=pl.get_index_type())
            return pl.col(column).is_in(listed.implode())

        def lookup(positions: pl.Series) -> pl.Series:
            found = pl.Series(positions.name, self.contains(positions.fill_null(0)))
            if not positions.has_nulls():  # Polars may probe the function with a null
                return found
            return pl.select(pl.when(positions.is_not_null()).then(found)).to_series()

        return pl.col(column).map_batches(lookup, return_dtype=pl.Boolean, is_elementwise=True)

    def _positions(self, positions: pl.Series | np.ndarray) -> np.ndarray:
        at = positions.to_numpy() if isinstance(positions, pl.Series) else positions
        at = at.astype(np.int64, copy=False)
        if at.size and (at.min() < 0 or at.max() >= self.size):
            raise IndexError(f"row position outside 0..{self.size - 1}")
        return at
