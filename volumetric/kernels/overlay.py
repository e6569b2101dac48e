"""The lab's Vaa3D overlay: a clipped, powered distance map added to the raw intensities."""

from __future__ import annotations

import numpy as np

UINT16_MAX = 65535


def overlay(raw: np.ndarray, distance: np.ndarray, *, clip: float, power: float = 1.0,
            rgb: bool = False) -> np.ndarray:
    """Combine normalised raw intensities with a predicted distance map, as uint16.

    Parameters
    ----------
    raw : ndarray
        Raw intensities already normalised to about 0..1 (clipped to [0, 1] here).
    distance : ndarray
        Predicted distance map, same shape.
    clip : float
        Distances are clipped to ``[0, clip]`` and divided by ``clip``.
    power : float
        Exponent applied to the normalised distance (above 1 sharpens the centre lines).
    rgb : bool
        Return ``(3, ...)`` with the raw in grey and the prediction added to red only,
        instead of one grey channel ``raw + prediction``.

    Returns
    -------
    ndarray
        uint16: grey ``(raw + d) / 2`` or RGB ``(min(raw + d, 1), raw, raw)``, scaled to 0..65535.

    Examples
    --------
    >>> overlay(np.array([0.0, 1.0]), np.array([4.0, 0.0]), clip=2.0)
    array([32768, 32768], dtype=uint16)
    """
    base = np.clip(np.asarray(raw, dtype=np.float32), 0.0, 1.0)
    d = (np.clip(np.asarray(distance, dtype=np.float32), 0.0, clip) / np.float32(clip)) ** power
    if rgb:
        channels = np.stack([np.minimum(base + d, 1.0), base, base])
        return np.rint(channels * UINT16_MAX).astype(np.uint16)
    return np.rint((base + d) / 2 * UINT16_MAX).astype(np.uint16)
