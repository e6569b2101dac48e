"""Intensity normalisation of network inputs, shared by training and inference.

Statistics are measured once per volume (see
:func:`volumetric.io.intensity.intensity_stats`) and applied identically to
every patch or window, so a window's values never depend on where it lies.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from volumetric.errors import check_choice

METHODS = ("none", "percentile", "zscore")


def normalize(block: np.ndarray, stats: Mapping[str, float], method: str) -> np.ndarray:
    """Normalise ``block`` to float32 with volume-wide ``stats``.

    Parameters
    ----------
    block : ndarray
        Raw intensities.
    stats : mapping
        ``low``/``high`` (percentiles) and ``mean``/``std`` of the volume.
    method : {"none", "percentile", "zscore"}
        ``percentile`` maps ``low -> 0`` and ``high -> 1`` (not clipped);
        ``zscore`` subtracts the mean and divides by the standard deviation.

    Examples
    --------
    >>> normalize(np.array([10, 20, 30]), {"low": 10, "high": 30}, "percentile")
    array([0. , 0.5, 1. ], dtype=float32)
    """
    offset, scale = affine(stats, method)
    return (np.asarray(block, dtype=np.float32) - np.float32(offset)) / np.float32(scale)


def affine(stats: Mapping[str, float], method: str) -> tuple[float, float]:
    """``(offset, scale)`` with ``normalize(x) == (x - offset) / scale``.

    Its inverse, ``y * scale + offset``, writes a prediction made on the
    normalised scale back in the original units.

    Examples
    --------
    >>> affine({"low": 10, "high": 30}, "percentile")
    (10.0, 20.0)
    """
    check_choice(method, METHODS, "normalisation")
    if method == "none":
        return 0.0, 1.0
    if method == "percentile":
        span = float(stats["high"]) - float(stats["low"])
        return float(stats["low"]), span if span > 0 else 1.0
    std = float(stats["std"])
    return float(stats["mean"]), std if std > 0 else 1.0
