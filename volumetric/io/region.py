"""A region of one pyramid level of an OME-Zarr image, read in bounded pieces.

Exports read their input through a :class:`Selection`: one level, an index
range per axis (``--region``, ``--channel``, ``--t``), always presented as a
5D ``(t, c, z, y, x)`` view (absent axes have length 1). Reads go in *slabs*
of whole ``y, x`` planes (:meth:`Selection.z_slabs`) or in *pieces* of one
row of chunks (:meth:`Selection.pieces`) that never cross a Zarr chunk along
``z``, sized by a byte budget, so memory stays bounded however large the
image is.

Region syntax: comma-separated ``AXIS=START:STOP`` (or ``AXIS=INDEX`` for a
single index) in the chosen level's voxel indices, ``STOP`` exclusive, an
omitted bound meaning the axis' start or end: ``z=10:50,y=:256,x=100:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.geometry import Box

AXES5 = "tczyx"
SLAB_BYTES = 64 * 2**20  # default read budget of exports
_RANGE = re.compile(r"^\s*([tczyx])\s*=\s*(\d*)\s*(?::\s*(\d*))?\s*$")


def parse_region(text: str | None) -> dict[str, tuple[int | None, int | None]]:
    """Parse ``"z=10:50,y=0:256"`` into ``{"z": (10, 50), "y": (0, 256)}``.

    A single index ``z=5`` means ``5:6``; an omitted bound is None.

    Raises
    ------
    InputError
        A malformed item or an axis given twice.

    Examples
    --------
    >>> parse_region("z=10:50, x=:8, t=3")
    {'z': (10, 50), 'x': (None, 8), 't': (3, 4)}
    """
    ranges: dict[str, tuple[int | None, int | None]] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        match = _RANGE.match(item)
        if not match:
            raise InputError(f"--region {item.strip()!r} is not AXIS=START:STOP "
                             "(axes t, c, z, y, x; e.g. z=10:50,y=0:256)")
        axis, start, stop = match.group(1), match.group(2), match.group(3)
        if axis in ranges:
            raise InputError(f"--region names axis {axis} twice")
        if stop is None and ":" not in item:
            if not start:
                raise InputError(f"--region {item.strip()!r} has no index")
            ranges[axis] = (int(start), int(start) + 1)
        else:
            ranges[axis] = (int(start) if start else None, int(stop) if stop else None)
    return ranges


def _aligned(start: int, stop: int, chunk: int) -> Iterator[slice]:
    """``start:stop`` cut at multiples of ``chunk``."""
    while start < stop:
        end = min((start // chunk + 1) * chunk, stop)
        yield slice(start, end)
        start = end


@dataclass(frozen=True)
class Selection:
    """A box of one level of an image, seen as ``(t, c, z, y, x)``.

    Parameters
    ----------
    array : zarr.Array
        The level's array, in the image's own axes.
    axes : str
        The image's axes (a subsequence of ``tczyx``).
    box : Box
        The selected index ranges, one per axis of ``array``.
    voxel_size : tuple of float
        ``(z, y, x)`` voxel size at this level (1.0 for absent axes).
    unit : str or None
        Length unit of ``voxel_size``.
    """

    array: Any
    axes: str
    box: Box
    voxel_size: tuple[float, float, float]
    unit: str | None

    @property
    def shape5(self) -> tuple[int, int, int, int, int]:
        """``(T, C, Z, Y, X)`` of the selection."""
        sizes = dict(zip(self.axes, self.box.shape))
        return tuple(sizes.get(a, 1) for a in AXES5)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def read(self, t: slice, c: slice, z: slice, y: slice = slice(None)) -> np.ndarray:
        """Read the 5D block ``[t, c, z, y, :]`` (slices relative to the selection).

        The block is read one row of chunks (along y) at a time, so Zarr never
        holds more decoded chunks than one row's, whatever the plane's size.
        """
        wanted = {"t": t, "c": c, "z": z, "y": y, "x": slice(None)}
        index = []
        for axis, start, stop in zip(self.axes, self.box.start, self.box.stop):
            lo, hi, _ = wanted[axis].indices(stop - start)
            index.append(slice(start + lo, start + hi))
        y_axis = self.axes.index("y")
        rows, chunk = index[y_axis], int(self.array.chunks[y_axis])
        parts = list(_aligned(rows.start, rows.stop, chunk))
        if len(parts) == 1:
            block = np.asarray(self.array[tuple(index)])
        else:
            block = np.empty([s.stop - s.start for s in index], dtype=self.dtype)
            for row in parts:
                index[y_axis] = row
                part = [slice(None)] * block.ndim
                part[y_axis] = slice(row.start - rows.start, row.stop - rows.start)
                block[tuple(part)] = self.array[tuple(index)]
        missing = [i for i, a in enumerate(AXES5) if a not in self.axes]
        return np.expand_dims(block, missing) if missing else block

    def pieces(self, budget_bytes: int) -> Iterator[tuple[int, int, slice, slice]]:
        """``(t, c, z, y)`` pieces covering the selection, each read decoding whole chunks once.

        A piece is one time point and channel, one row of chunks along y and
        all x, and as many z planes of one chunk as fit ``budget_bytes`` (at
        least one): with chunks of ``d`` planes and a budget of ``d`` rows of
        chunks, every chunk is decoded exactly once.
        """
        t_count, c_count, _, _, x_count = self.shape5
        y_axis = self.axes.index("y")
        rows = list(_aligned(self.box.start[y_axis], self.box.stop[y_axis],
                             int(self.array.chunks[y_axis])))
        row_bytes = max(r.stop - r.start for r in rows) * x_count * self.dtype.itemsize
        origin = self.box.start[y_axis]
        for t in range(t_count):
            for c in range(c_count):
                for z in self.z_slabs(max(1, budget_bytes // row_bytes)):
                    for row in rows:
                        yield t, c, z, slice(row.start - origin, row.stop - origin)

    def z_slabs(self, planes_budget: int) -> Iterator[slice]:
        """Ranges of ``z`` (relative) of at most ``planes_budget`` planes, within one chunk."""
        depth = self.shape5[2]
        if "z" not in self.axes:
            yield slice(0, 1)
            return
        axis = self.axes.index("z")
        chunk = int(self.array.chunks[axis])
        origin = self.box.start[axis]
        z = 0
        while z < depth:
            boundary = (origin + z) // chunk * chunk + chunk - origin
            stop = min(z + max(1, planes_budget), boundary, depth)
            yield slice(z, stop)
            z = stop

    def slab_planes(self, budget_bytes: int) -> int:
        """How many ``z`` planes (all channels) fit in ``budget_bytes``."""
        _, c, _, y, x = self.shape5
        plane = c * y * x * self.dtype.itemsize
        return max(1, budget_bytes // plane)

    def sampler(self) -> RegionArray:
        """The selection as an array-like for :func:`volumetric.io.intensity.intensity_stats`."""
        return RegionArray(self.array, self.box)


@dataclass(frozen=True)
class RegionArray:
    """A box of a Zarr array with ``shape``, ``chunks`` and slicing (reads on demand)."""

    array: Any
    box: Box

    @property
    def shape(self) -> tuple[int, ...]:
        return self.box.shape

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(min(int(c), s) for c, s in zip(self.array.chunks, self.box.shape))

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        shifted = []
        for s, start, stop in zip(index, self.box.start, self.box.stop):
            lo, hi, _ = s.indices(stop - start)
            shifted.append(slice(start + lo, start + hi))
        return np.asarray(self.array[tuple(shifted)])


def select(
    array: Any,
    axes: str,
    voxel_size: Sequence[float],
    unit: str | None,
    *,
    region: str | None = None,
    channel: int | None = None,
    t: int | None = None,
) -> Selection:
    """Build a :class:`Selection` of ``array``, checking every range against its shape.

    Parameters
    ----------
    array : zarr.Array
        One pyramid level.
    axes : str
        Its axes.
    voxel_size : sequence of float
        Voxel size of the image's spatial axes at this level, in ``z, y, x`` order.
    unit : str or None
        Length unit.
    region : str, optional
        ``--region`` text (see :func:`parse_region`).
    channel, t : int, optional
        A single channel or time point (0-based).

    Raises
    ------
    InputError
        A range outside the image, an empty range, an axis the image lacks,
        or a channel / time point out of range.
    """
    shape = dict(zip(axes, array.shape))
    ranges = parse_region(region)
    for axis, value, option in (("c", channel, "--channel"), ("t", t, "--t")):
        if value is None:
            continue
        if axis not in axes:
            raise InputError(f"{option} {value}: the image has no {axis} axis (axes {axes})")
        if not 0 <= value < shape[axis]:
            raise InputError(f"{option} {value} is out of range: the image has "
                             f"{shape[axis]} (0..{shape[axis] - 1})")
        if axis in ranges:
            raise InputError(f"give {axis} either in --region or with {option}, not both")
        ranges[axis] = (value, value + 1)
    start, stop = [], []
    for axis in axes:
        lo, hi = ranges.pop(axis, (None, None))
        lo, hi = (0 if lo is None else lo), (shape[axis] if hi is None else hi)
        if not 0 <= lo < hi <= shape[axis]:
            raise InputError(f"--region {axis}={lo}:{hi} is outside the image or empty: "
                             f"{axis} runs 0:{shape[axis]} at this level")
        start.append(lo)
        stop.append(hi)
    if ranges:
        raise InputError(f"--region names axis {', '.join(sorted(ranges))} that the image "
                         f"does not have (axes {axes})")
    spatial = dict(zip((a for a in axes if a in "zyx"), voxel_size))
    voxel = tuple(float(spatial.get(a, 1.0)) for a in "zyx")
    box = Box(tuple(start), tuple(stop))
    return Selection(array, axes, box, voxel, unit)  # type: ignore[arg-type]
