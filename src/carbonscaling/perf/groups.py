"""Distinct rows of a few small-integer columns, without sorting.

A search grid repeats a few hundred distinct (TP, CP, EP, ...) combinations over up to
10^5 layouts, and the step model computes each distinct one once. ``np.unique`` finds
them by sorting (``O(n log n)``, most of a small evaluation's time); the columns here are
small non-negative integers, so a lookup table per column does it in ``O(n + max)``.
"""

from __future__ import annotations

import numpy as np

TABLE_MAX = 1 << 20  # largest column value (and product of distinct counts) looked up in a table


def _codes(col: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense codes ``0..k-1`` of a column's values (in increasing value order), and ``k``."""
    if col.dtype.kind in "iub" and len(col) and col.min() >= 0 and col.max() < TABLE_MAX:
        seen = np.zeros(int(col.max()) + 1, dtype=bool)
        seen[col] = True
        lut = np.cumsum(seen) - 1
        return lut[col], int(lut[-1]) + 1
    uniq, inv = np.unique(col, return_inverse=True)
    return inv.reshape(-1), len(uniq)


def group_rows(*cols) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of integer columns: what ``np.unique(np.stack(cols, 1), axis=0,
    return_index=True, return_inverse=True)`` gives, without its sort.

    Parameters
    ----------
    *cols : numpy.ndarray
        1-D integer arrays of one length (e.g. a layout grid's TP, CP, microbatch).

    Returns
    -------
    first : numpy.ndarray
        For each distinct row, the index of its first occurrence; distinct rows are ordered
        lexicographically by value, as ``np.unique`` orders them.
    inverse : numpy.ndarray
        For every row, the number of its distinct row.
    """
    cols = [np.asarray(c).reshape(-1) for c in cols]
    n = len(cols[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    key, size = np.zeros(n, dtype=np.int64), 1
    for col in cols:
        code, k = _codes(col)
        if size * k >= TABLE_MAX:  # too many combinations for a table: compress what we have first
            key, size = _codes(key)
        key, size = key * k + code, size * k
    inverse, _ = _codes(key)
    first = np.full(int(inverse.max()) + 1, n, dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(n))
    return first, inverse
