"""The volumes a patch dataset reads: (raw, target[, mask]) OME-Zarr pairs and how to index them."""

from __future__ import annotations

from dataclasses import dataclass
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
    t : int
        Time point used when an image has a ``t`` axis.
    channel : int, optional
        One channel of the raw image; all channels by default. Target and
        mask keep all their channels.
    """

    raw: str
    target: str
    mask: str | None = None
    t: int = 0
    channel: int | None = None


@dataclass(frozen=True)
class PairImage:
    """Where and how one image is read: its level-0 array and the t/channel selection."""

    name: str
    array: str
    axes: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    voxel_size: tuple[float, ...]
    unit: str | None
    t: int
    channel: int | None

    @property
    def spatial_shape(self) -> Coord:
        return tuple(s for a, s in zip(self.axes, self.shape) if a in SPATIAL_AXES)

    @property
    def spatial_chunks(self) -> Coord:
        return tuple(c for a, c in zip(self.axes, self.chunks) if a in SPATIAL_AXES)

    @property
    def channels(self) -> int:
        if self.channel is not None or "c" not in self.axes:
            return 1
        return self.shape[self.axes.index("c")]

    def selection(self, box: Box) -> tuple[Any, ...]:
        """The array index of spatial ``box``: time point fixed, channel axis kept."""
        spatial = iter(box.slices)
        index: list[Any] = []
        for axis in self.axes:
            if axis == "t":
                index.append(self.t)
            elif axis == "c":
                index.append(slice(None) if self.channel is None
                             else slice(self.channel, self.channel + 1))
            else:
                index.append(next(spatial))
        return tuple(index)


def _open_image(path: str, *, role: str, t: int, channel: int | None) -> PairImage:
    image = open_image(path)
    if not image.complete:
        raise InputError(f"{role} image {path} is incomplete (an interrupted run?)")
    axes = image.meta.axes
    if "t" in axes and not 0 <= t < image.shape[axes.index("t")]:
        raise InputError(f"time point {t} is outside {role} image {path} "
                         f"({image.shape[axes.index('t')]} time points)")
    if channel is not None:
        if "c" not in axes:
            raise InputError(f"channel {channel} asked for, but {role} image {path} "
                             "has no channels")
        if not 0 <= channel < image.shape[axes.index("c")]:
            raise InputError(f"channel {channel} is outside {role} image {path} "
                             f"({image.shape[axes.index('c')]} channels)")
    array = image.array(0)
    return PairImage(
        name=path, array=str(Path(path) / image.levels[0].path), axes=axes,
        shape=tuple(image.shape), chunks=tuple(array.chunks),
        voxel_size=image.meta.voxel_size, unit=image.meta.unit, t=t, channel=channel,
    )


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
        An incomplete image, a t/channel outside it, or a target or mask
        whose spatial shape or voxel size differs from the raw image's.
    """
    if not isinstance(pair, VolumePair):
        pair = VolumePair(*pair)
    images = {
        "raw": _open_image(pair.raw, role="raw", t=pair.t, channel=pair.channel),
        "target": _open_image(pair.target, role="target", t=pair.t, channel=None),
    }
    if pair.mask is not None:
        images["mask"] = _open_image(pair.mask, role="mask", t=pair.t, channel=None)
    for role in ("target", "mask"):
        if role in images:
            _check_alike(images["raw"], images[role], role)
    return images


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
