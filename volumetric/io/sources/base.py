"""The common shape of every input: a lazily opened array read box by box.

A source knows its axes in its own storage order (``native_axes``, e.g.
``"cxyz"``) and presents them in NGFF order (``axes``, e.g. ``"czyx"``).
:meth:`Source.read` takes a box in NGFF order and returns the data in NGFF
order. Sources pickle without their open file handles and reopen lazily,
so block tasks can read them from any worker process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from volumetric.errors import DamagedChunkError, InputError
from volumetric.geometry import Box
from volumetric.io.ome import NGFF_AXES, SPATIAL_AXES, ImageMeta

DEFAULT_AXES = {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}


def parse_axes(axes: str | None, shape: Sequence[int], *, what: str) -> str:
    """Check a user's (or metadata's) axis string against the data's shape.

    ``s`` (samples, e.g. RGB) is accepted as a synonym of ``c``. Without
    ``axes``, the trailing NGFF order is assumed (2D ``yx``, 3D ``zyx``...).
    """
    ndim = len(shape)
    if axes is None:
        if ndim not in DEFAULT_AXES:
            raise InputError(f"{what} has {ndim} dimensions {tuple(shape)}; pass --axes")
        return DEFAULT_AXES[ndim]
    axes = axes.lower().replace("s", "c")
    if len(axes) != ndim:
        raise InputError(
            f"axes {axes!r} do not match {what}: {len(axes)} axes given "
            f"for {ndim} dimensions {tuple(shape)}"
        )
    if len(set(axes)) != ndim or not set(axes) <= set(NGFF_AXES):
        raise InputError(f"axes {axes!r} must be distinct letters among t, c, z, y, x")
    if not {"y", "x"} <= set(axes):
        raise InputError(f"axes {axes!r} need both y and x")
    return axes


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``frame_2`` before ``frame_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def ngff_order(native_axes: str) -> str:
    """The NGFF order (``tczyx`` subsequence) of a set of axis names."""
    return "".join(a for a in NGFF_AXES if a in native_axes)


def to_ngff(native_axes: str, values: Sequence[int]) -> tuple[int, ...]:
    """Per-axis values (a shape, chunks) from native to NGFF axis order."""
    by_axis = dict(zip(native_axes, values))
    return tuple(by_axis[a] for a in ngff_order(native_axes))


class Source:
    """A readable array with axis and physical metadata.

    Subclasses set ``path``, ``native_axes``, ``native_shape``, ``dtype`` and
    the physical metadata in ``__init__`` (opening the file only to read
    metadata) and implement :meth:`_read_native`.
    """

    path: str
    native_axes: str
    native_shape: tuple[int, ...]
    dtype: np.dtype
    voxel_size: tuple[float, ...] | None = None  # z, y, x order, spatial axes only
    origin: tuple[float, ...] | None = None  # first voxel centre, like voxel_size
    unit: str | None = None
    channel_names: tuple[str, ...] | None = None
    time_step: float | None = None
    time_unit: str | None = None
    chunks: tuple[int, ...] | None = None  # smallest efficient read, NGFF order, if known

    _handle: Any = None
    # whether threads may read through one instance at once (a small job's embedded cluster
    # runs its workers as threads of one process); readers with file state of their own
    # (HDF5's global lock, TIFF and video decoders) are read from worker processes only
    thread_safe: bool = False
    # what readers and decoders raise for a damaged, truncated or removed file
    read_errors: tuple[type[Exception], ...] = (OSError, ValueError, EOFError)

    @property
    def axes(self) -> str:
        return ngff_order(self.native_axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return to_ngff(self.native_axes, self.native_shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def meta(
        self,
        voxel_size: Sequence[float] | None = None,
        unit: str | None = None,
        name: str | None = None,
    ) -> ImageMeta:
        """The output metadata; explicit ``voxel_size`` / ``unit`` override the source's."""
        n = sum(a in SPATIAL_AXES for a in self.axes)
        if voxel_size is not None and len(voxel_size) != n:
            raise InputError(
                f"--voxel-size has {len(voxel_size)} values but the data has {n} spatial "
                f"axes ({''.join(a for a in self.axes if a in SPATIAL_AXES)})"
            )
        size = voxel_size or self.voxel_size or (1.0,) * n
        channels = self.channel_names
        if channels is not None and "c" in self.axes:
            n_c = self.shape[self.axes.index("c")]
            channels = channels if len(channels) == n_c else None
        return ImageMeta(
            axes=self.axes,
            voxel_size=tuple(size),
            unit=unit if unit is not None else self.unit,
            channel_names=channels if "c" in self.axes else None,
            time_step=self.time_step,
            time_unit=self.time_unit,
            name=name or os.path.basename(self.path.rstrip("/")),
            origin=self.origin,
        )

    def identity(self) -> dict[str, Any]:
        """What identifies this input for resume: path, size and modification time."""
        st = os.stat(self.path)
        return {
            "path": os.path.abspath(self.path),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "axes": self.native_axes,
            "shape": list(self.native_shape),
            "dtype": str(np.dtype(self.dtype)),
        }

    def read(self, box: Box) -> np.ndarray:
        """Read ``box`` (NGFF axis order) and return it in NGFF axis order.

        Raises
        ------
        InputError
            When the file cannot be read or decoded there (damaged, truncated,
            removed); the message names the file and the box.
        """
        start = dict(zip(self.axes, box.start))
        stop = dict(zip(self.axes, box.stop))
        native = tuple(slice(start[a], stop[a]) for a in self.native_axes)
        try:
            data = np.asarray(self._read_native(native))
        except self.read_errors as exc:
            cause = f"({type(exc).__name__}: {exc})"
            damaged = self._damaged_file(native)
            if damaged is None:
                raise InputError(f"{self.path}: cannot read {box} {cause}") from None
            file, folder = damaged
            raise DamagedChunkError(f"{self.path}: cannot read {box}: damaged chunk file "
                                    f"{file} {cause}", file, folder) from None
        perm = [self.native_axes.index(a) for a in self.axes]
        return np.ascontiguousarray(data.transpose(perm))

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        raise NotImplementedError

    def _damaged_file(self, index: tuple[slice, ...]) -> tuple[str, str] | None:
        """The stored file a failed read of ``index`` could not decode, and the array (folder)
        holding it; None when no one file is to blame."""
        return None

    def close(self) -> None:
        """Close any open handle (it is reopened on the next read)."""
        handle, self._handle = self._handle, None
        if handle is not None and hasattr(handle, "close"):
            handle.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def describe(self) -> str:
        """One line for logs: path, shape, axes and dtype."""
        return f"{self.path}: {self.axes} {self.shape} {np.dtype(self.dtype)}"
