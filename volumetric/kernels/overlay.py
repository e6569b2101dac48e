"""The lab's overlay: the raw intensities brightened where the prediction finds the structure.

A prediction becomes a weight in ``[0, 1]`` that is 1 on the structure and
falls to 0 away from it (:func:`structure_weight`); the weight, times a
factor, is added to the percentile-normalised raw (:func:`overlay_sum`) and
the sum is scaled so that its volume-wide peak is 65535 (:func:`overlay`).
"""

from __future__ import annotations

import numpy as np

UINT16_MAX = 65535
KINDS = ("distance", "probability")
COLOURS = ("red", "green", "blue")


def structure_weight(prediction: np.ndarray, *, kind: str, clip: float | None = None,
                     power: float = 1.0) -> np.ndarray:
    """The weight of each voxel: 1 on the structure, 0 far from it.

    Parameters
    ----------
    prediction : ndarray
        A distance map (0 on the structure) or a probability (1 on it).
    kind : {"distance", "probability"}
        What ``prediction`` holds.
    clip : float, optional
        Distance ``D`` at which the weight reaches 0; required for distances.
    power : float
        Exponent of a distance's weight ``(1 - min(d, D) / D) ** power``; above 1
        the weight concentrates near the structure. Probabilities are used as they are.

    Returns
    -------
    ndarray
        float32 weights in ``[0, 1]``; NaN predictions weigh 0.

    Examples
    --------
    >>> structure_weight(np.array([0.0, 3.0, 9.0]), kind="distance", clip=6.0, power=2)
    array([1.  , 0.25, 0.  ], dtype=float32)
    >>> structure_weight(np.array([0.2, 1.5]), kind="probability")
    array([0.2, 1. ], dtype=float32)
    """
    far = 0.0 if kind == "probability" else np.inf
    p = np.nan_to_num(np.asarray(prediction, dtype=np.float32), nan=far)
    if kind == "probability":
        return np.clip(p, 0.0, 1.0)
    if kind != "distance":
        raise ValueError(f"unknown prediction kind {kind!r}; choose one of {KINDS}")
    if clip is None:
        raise ValueError("a distance prediction needs a clip")
    d = np.float32(clip)
    return ((d - np.clip(p, 0.0, d)) / d) ** np.float32(power)


def overlay_sum(raw: np.ndarray, weights: np.ndarray, *, weight: float = 1.0) -> np.ndarray:
    """``clip(raw, 0, 1) + weight * weights``, float32: the overlay before scaling.

    Parameters
    ----------
    raw : ndarray
        Raw intensities normalised to about 0..1 (clipped to ``[0, 1]`` here).
    weights : ndarray
        Structure weights from :func:`structure_weight`, same shape.
    weight : float
        Factor of the structure weights.
    """
    base = np.clip(np.asarray(raw, dtype=np.float32), 0.0, 1.0)
    return base + np.float32(weight) * np.asarray(weights, dtype=np.float32)


def overlay(raw: np.ndarray, weights: np.ndarray, *, weight: float = 1.0, peak: float,
            rgb: bool = False, colour: str = "green") -> np.ndarray:
    """The overlay of one block as uint16, the volume-wide ``peak`` of the sum mapped to 65535.

    Parameters
    ----------
    raw, weights, weight
        See :func:`overlay_sum`.
    peak : float
        Maximum of :func:`overlay_sum` over the whole volume (0: all output is 0).
    rgb : bool
        Return ``(3, ...)``: the grey raw in every channel and the weights added
        to the ``colour`` channel only, all channels on the same scale.
    colour : {"red", "green", "blue"}
        The channel of the weights with ``rgb``.

    Returns
    -------
    ndarray
        uint16: the scaled sum, or the RGB channels.

    Examples
    --------
    >>> overlay(np.array([0.0, 1.0]), np.array([1.0, 0.0]), weight=1.0, peak=1.0)
    array([65535, 65535], dtype=uint16)
    """
    scale = np.float32(UINT16_MAX / peak if peak > 0 else 0.0)
    total = np.rint(overlay_sum(raw, weights, weight=weight) * scale).astype(np.uint16)
    if not rgb:
        return total
    grey = np.rint(np.clip(np.asarray(raw, dtype=np.float32), 0.0, 1.0) * scale).astype(np.uint16)
    channels = [grey, grey, grey]
    channels[COLOURS.index(colour)] = total
    return np.stack(channels)
