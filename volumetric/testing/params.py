"""Checking the size and strength parameters of the synthetic generators."""

from __future__ import annotations

import math
from collections.abc import Sequence

from volumetric.errors import InputError


def positive(values: Sequence[float], n: int, what: str, kind: type = int) -> tuple:
    """``values`` as a tuple of ``n`` positive numbers of ``kind``, or an :class:`InputError`.

    Examples
    --------
    >>> positive([4, 5, 6], 3, "shape")
    (4, 5, 6)
    """
    try:
        out = tuple(kind(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be {n} positive numbers, got {values!r}") from None
    if len(out) != n or any(v <= 0 for v in out):
        raise InputError(f"{what} must be {n} positive numbers, got {tuple(values)}")
    return out


def amount(value: float, what: str) -> float:
    """``value`` as a non-negative finite float, or an :class:`InputError` naming ``what``.

    Examples
    --------
    >>> amount(0.03, "bend")
    0.03
    """
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a non-negative number, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise InputError(f"{what} must be a non-negative finite number, got {value!r}")
    return out
