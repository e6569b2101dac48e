"""Euclidean distance maps of one block (the ``edt`` package) and target shaping.

Boundary rule, shared by every distance computation in volumetric: the
volume's outer faces are *not* background. A voxel's distance is the
distance to the nearest target voxel *inside the volume*; nothing is assumed
beyond the faces. This is what ``scipy.ndimage.distance_transform_edt``
computes (it only looks inside the array) and what ``edt.edt`` computes with
``black_border=False``, so a block-wise result can equal the whole-array one.
Where no target voxel exists at all, the distance is infinite (scipy returns
meaningless values there; ``edt`` returns ``inf``).

Distances are physical: ``spacing`` is the voxel size along each axis.

Kinds of map (``target``):

- ``"foreground"``: distance to the nearest nonzero voxel (0 on them);
- ``"background"``: distance to the nearest zero voxel (``--invert``);
- ``"signed"``: distance to foreground outside, minus the distance to
  background inside (negative inside, positive outside, never 0);
- ``"signed-inverted"``: the negation of ``"signed"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TARGETS = ("foreground", "background", "signed", "signed-inverted")


def target_masks(target: str) -> tuple[str, ...]:
    """The unsigned maps a ``target`` needs: distances to ``"foreground"``, ``"background"``."""
    if target not in TARGETS:
        raise ValueError(f"unknown distance target {target!r}")
    return {"foreground": ("foreground",), "background": ("background",)}.get(
        target, ("foreground", "background")
    )


def combine(distances: Sequence[np.ndarray], target: str) -> np.ndarray:
    """Build the ``target`` map from the unsigned distances listed by :func:`target_masks`."""
    if target in ("foreground", "background"):
        return distances[0]
    to_foreground, to_background = distances
    signed = to_foreground - to_background  # one of the two is 0 at every voxel
    return signed if target == "signed" else -signed


def distance_map(mask: np.ndarray, spacing: Sequence[float], *, target: str = "foreground",
                 within: float | None = None) -> np.ndarray:
    """Euclidean distance map of a boolean mask (1D to 3D), with the ``edt`` package.

    Parameters
    ----------
    mask : ndarray of bool
        Foreground voxels.
    spacing : sequence of float
        Voxel size along each axis of ``mask``.
    target : {"foreground", "background", "signed", "signed-inverted"}
        Which distance to compute (see the module docstring).
    within : float, optional
        Only distances up to this one are needed (a clipped map): each
        transform then runs on the bounding box of its target voxels grown
        by ``within``, and every voxel outside that box, farther than
        ``within`` from all of them, gets ``inf``.

    Returns
    -------
    ndarray of float32
        Same shape as ``mask``; ``inf`` where no voxel of the target kind exists.

    Examples
    --------
    >>> mask = np.zeros((1, 9), dtype=bool); mask[0, 1] = True
    >>> distance_map(mask, (1.0, 1.0), within=2.0)[0].tolist()
    [1.0, 0.0, 1.0, 2.0, inf, inf, inf, inf, inf]
    """
    mask = np.asarray(mask, dtype=bool)
    distances = []
    for kind in target_masks(target):
        # edt measures the distance of nonzero voxels to the nearest zero voxel
        outside = ~mask if kind == "foreground" else mask
        region = None if within is None else _near_box(~outside, spacing, within)
        if within is None or region == tuple(slice(0, n) for n in mask.shape):
            distances.append(_edt(outside, spacing))
            continue
        dist = np.full(mask.shape, np.inf, dtype=np.float32)
        if region is not None:
            dist[region] = _edt(outside[region], spacing)
        distances.append(dist)
    return combine(distances, target)


def _edt(outside: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    import edt

    return edt.edt(np.ascontiguousarray(outside, dtype=np.uint8),
                   anisotropy=tuple(float(s) for s in spacing), black_border=False, parallel=1)


def _near_box(targets: np.ndarray, spacing: Sequence[float], within: float
              ) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``targets`` grown by ``within`` (None when there are none)."""
    box = []
    for axis, step in enumerate(spacing):
        others = tuple(a for a in range(targets.ndim) if a != axis)
        hits = np.flatnonzero(targets.any(axis=others))
        if hits.size == 0:
            return None
        grow = math.ceil(within / step)
        box.append(slice(max(0, int(hits[0]) - grow),
                         min(targets.shape[axis], int(hits[-1]) + 1 + grow)))
    return tuple(box)


def shape_distance(
    distance: np.ndarray, *, clip: float | None = None, power: float | None = None,
    scale_to_clip: bool = False,
) -> np.ndarray:
    """Shape training targets: clip to ``[-clip, clip]``, then ``|d|**power``, ``/ clip**power``.

    The sign of signed distances is kept through the power.

    Parameters
    ----------
    distance : ndarray
        Distances (possibly signed, possibly infinite).
    clip : float, optional
        Largest magnitude kept.
    power : float, optional
        Exponent applied to the magnitude after clipping.
    scale_to_clip : bool
        Divide by ``clip ** power`` (requires ``clip``), giving values in [-1, 1].

    Returns
    -------
    ndarray of float32
    """
    out = np.asarray(distance, dtype=np.float32)
    if clip is not None:
        bound = np.float32(clip)  # a Python float bound makes np.clip several times slower
        out = np.clip(out, -bound, bound)
    if power is not None:
        out = np.sign(out) * np.abs(out) ** np.float32(power)
    if scale_to_clip:
        if clip is None:
            raise ValueError("scale_to_clip needs clip")
        out = out / np.float32(clip if power is None else clip**power)
    return out.astype(np.float32, copy=False)


def empty_value(mask: np.ndarray, target: str) -> float | None:
    """The unclipped distance of every voxel when ``mask`` holds none of the target kind.

    Returns ``inf`` (or ``-inf``) when the whole block is at "infinite"
    distance, and None when the block holds target voxels and needs a real
    transform. Inside a padded block read with a halo of ``clip``, an
    infinite value means "at least ``clip`` away".
    """
    fg, bg = bool(mask.any()), not bool(mask.all())
    if target == "foreground":
        return None if fg else np.inf
    if target == "background":
        return None if bg else np.inf
    if fg and bg:
        return None
    inside = -np.inf if fg else np.inf  # all foreground, or all background
    return inside if target == "signed" else -inside
