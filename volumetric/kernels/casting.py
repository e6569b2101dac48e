"""Casting computed values back to an image's data type."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_dtype(values: np.ndarray, dtype: Any) -> np.ndarray:
    """``values`` as ``dtype``: integers rounded (halves to even) and clipped to the type's range.

    Parameters
    ----------
    values : ndarray
        Computed values, usually floating point.
    dtype : dtype-like
        The data type wanted; floating types are a plain cast.

    Returns
    -------
    ndarray of ``dtype``

    Examples
    --------
    >>> to_dtype(np.array([-3.0, 2.5, 3.5, 300.0]), np.uint8).tolist()
    [0, 2, 4, 255]
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)
