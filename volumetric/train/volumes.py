"""The volumes a patch dataset reads: (raw, target[, mask]) OME-Zarr pairs and how to index them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.geometry import Box, Coord
from volumetric.io.ome import SPATIAL_AXES, open_image


@dataclass(frozen=True)
class VolumePair:
    """One training volume: raw image, target and optional loss mask (OME-Zarr image paths).

    Parameters
    ----------
    raw, target : str
        OME-Zarr images with the same spatial shape and voxel size. Targets
        may be binary masks, label images, distance maps or continuous
        images; integer targets are resampled by nearest neighbour, float
        targets linearly.
    mask : str, optional
        Voxels where the loss counts (nonzero), resampled by nearest neighbour.
    t : int, sequence of int or None
        Time points sampled when the raw image has a ``t`` axis: every one
        (None), one, or a selection. A target or mask without a ``t`` axis
        holds for every time point.
    channel : int, optional
        One channel of the raw image; all channels by default. Target and
        mask keep all their channels.
    """

    raw: str
    target: str
    mask: str | None = None
    t: int | Sequence[int] | None = None
    channel: int | None = None


@dataclass(frozen=True)
class PairImage:
    """Where and how one image is read: its level-0 array, sampled axes and channel selection.

    A ``z`` axis of length 1 (a projection's) is not sampled: such an image
    lines up with a 2D ``yx`` image of the same plane.
    """

    name: str
    array: str
    axes: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    voxel_size: tuple[float, ...]
    unit: str | None
    channel: int | None

    @property
    def sampled(self) -> str:
        """The spatial axes patches extend along: all but a ``z`` of length 1."""
        flat = "z" in self.axes and self.shape[self.axes.index("z")] == 1
        return "".join(a for a in self.axes if a in SPATIAL_AXES and not (flat and a == "z"))

    @property
    def spatial_shape(self) -> Coord:
        return tuple(s for a, s in zip(self.axes, self.shape) if a in self.sampled)

    @property
    def spatial_chunks(self) -> Coord:
        return tuple(c for a, c in zip(self.axes, self.chunks) if a in self.sampled)

    @property
    def time_points(self) -> int | None:
        """Length of the ``t`` axis; None without one."""
        return self.shape[self.axes.index("t")] if "t" in self.axes else None

    @property
    def channels(self) -> int:
        if self.channel is not None or "c" not in self.axes:
            return 1
        return self.shape[self.axes.index("c")]

    def selection(self, box: Box, t: int) -> tuple[Any, ...]:
        """The array index of ``box`` (sampled axes) at time point ``t``, channel axis kept."""
        spatial = iter(box.slices)
        index: list[Any] = []
        for axis in self.axes:
            if axis == "t":
                index.append(t)
            elif axis == "c":
                index.append(slice(None) if self.channel is None
                             else slice(self.channel, self.channel + 1))
            else:
                index.append(next(spatial) if axis in self.sampled else 0)
        return tuple(index)


def _open_image(path: str, *, role: str, channel: int | None) -> PairImage:
    image = open_image(path)
    if not image.complete:
        raise InputError(f"{role} image {path} is incomplete (an interrupted run?)")
    axes = image.meta.axes
    if channel is not None:
        if "c" not in axes:
            raise InputError(f"channel {channel} asked for, but {role} image {path} "
                             "has no channels")
        if not 0 <= channel < image.shape[axes.index("c")]:
            raise InputError(f"channel {channel} is outside {role} image {path} "
                             f"({image.shape[axes.index('c')]} channels)")
    array = image.array(0)
    found = PairImage(
        name=path, array=str(Path(path) / image.levels[0].path), axes=axes,
        shape=tuple(image.shape), chunks=tuple(array.chunks),
        voxel_size=tuple(image.meta.voxel_size), unit=image.meta.unit, channel=channel,
    )
    spatial = [a for a in axes if a in SPATIAL_AXES]
    sizes = tuple(v for a, v in zip(spatial, found.voxel_size) if a in found.sampled)
    return replace(found, voxel_size=sizes)


def _check_alike(raw: PairImage, other: PairImage, role: str) -> None:
    if raw.spatial_shape != other.spatial_shape:
        raise InputError(f"{role} {other.name} has spatial shape {other.spatial_shape}, "
                         f"raw {raw.name} has {raw.spatial_shape}")
    units_differ = raw.unit and other.unit and raw.unit != other.unit
    if units_differ or not np.allclose(raw.voxel_size, other.voxel_size, rtol=1e-6):
        raise InputError(f"{role} {other.name} has voxel size {other.voxel_size} {other.unit or ''}"
                         f", raw {raw.name} has {raw.voxel_size} {raw.unit or ''}")


def open_pair(pair: VolumePair | Any) -> dict[str, PairImage]:
    """Open and check the images of one pair (a VolumePair or a (raw, target[, mask]) tuple).

    Returns
    -------
    dict
        ``raw``, ``target`` and, when given, ``mask``.

    Raises
    ------
    InputError
        An incomplete image, a channel outside it, or a target or mask
        whose spatial shape (length-1 ``z`` dropped) or voxel size differs
        from the raw image's.
    """
    if not isinstance(pair, VolumePair):
        pair = VolumePair(*pair)
    images = {
        "raw": _open_image(pair.raw, role="raw", channel=pair.channel),
        "target": _open_image(pair.target, role="target", channel=None),
    }
    if pair.mask is not None:
        images["mask"] = _open_image(pair.mask, role="mask", channel=None)
    for role in ("target", "mask"):
        if role in images:
            _check_alike(images["raw"], images[role], role)
    return images


def time_points(pair: VolumePair, images: dict[str, PairImage]) -> tuple[int, ...]:
    """The raw's time points ``pair`` samples (``(0,)`` without a ``t`` axis).

    Raises
    ------
    InputError
        A time point outside the raw image, or a target or mask with
        another number of time points.
    """
    raw = images["raw"]
    count = raw.time_points or 1
    for role, image in images.items():
        if image.time_points not in (None, count):
            raise InputError(f"{role} {image.name} has {image.time_points} time points, "
                             f"raw {raw.name} has {count}")
    wanted = (range(count) if pair.t is None
              else (pair.t,) if isinstance(pair.t, int) else tuple(pair.t))
    for t in wanted:
        if not 0 <= t < count:
            raise InputError(f"--t {t} is outside raw {raw.name} (time points 0..{count - 1})")
    if not wanted:
        raise InputError("--t selects no time point")
    return tuple(int(t) for t in wanted)


def check_consistent(pairs: list[dict[str, PairImage]]) -> None:
    """Check that pairs can share one batch: same channel counts, masks in all or none."""
    first = pairs[0]
    for images in pairs[1:]:
        if ("mask" in images) != ("mask" in first):
            raise InputError("either every pair has a mask or none has")
        for role in images:
            if images[role].channels != first[role].channels:
                raise InputError(f"{role} {images[role].name} has {images[role].channels} "
                                 f"channels, {first[role].name} has {first[role].channels}")
