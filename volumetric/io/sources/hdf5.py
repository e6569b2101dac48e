"""HDF5 sources: one dataset, or a group of frame datasets stacked along ``t``.

Files are opened lazily inside each worker process (never shared across a
fork) and read with h5py's hyperslab selection, so only the requested box is
decoded.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.io.sources.base import Source, natural_key, ngff_order, parse_axes
from volumetric.io.units import normalize_unit

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nwb")
_VOXEL_ATTRS = ("element_size_um", "voxel_size", "voxel_size_um", "spacing", "resolution", "scale")


def _open(path: str) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None


def _datasets(group: Any) -> list[Any]:
    import h5py

    found: list[Any] = []
    group.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return [d for d in found if d.ndim >= 2]


def _physical(attrs: Any, native_axes: str) -> tuple[tuple[float, ...] | None, str | None]:
    """Voxel size (z, y, x order) and unit from common HDF5 attribute conventions."""
    spatial_native = [a for a in native_axes if a in "zyx"]
    for name in _VOXEL_ATTRS:
        if name not in attrs:
            continue
        values = np.atleast_1d(np.asarray(attrs[name], dtype=float)).tolist()
        if len(values) != len(spatial_native):
            continue
        by_axis = dict(zip(spatial_native, values))
        unit = attrs.get("unit", attrs.get("units", "micrometer" if "um" in name else None))
        if isinstance(unit, bytes):
            unit = unit.decode()
        try:
            unit = normalize_unit(unit) if isinstance(unit, str) else None
        except InputError:
            unit = None
        return tuple(by_axis[a] for a in "zyx" if a in by_axis), unit
    return None, None


def _axes_attr(ds: Any) -> str | None:
    """The dataset's ``axes`` attribute (e.g. ``"cxyz"``), if it has one."""
    axes = ds.attrs.get("axes")
    if isinstance(axes, bytes):
        axes = axes.decode()
    return axes if isinstance(axes, str) else None


class Hdf5Source(Source):
    """One dataset of an HDF5 file.

    Parameters
    ----------
    path : str
        The file.
    dataset : str, optional
        Path of the dataset inside the file; required when the file holds
        more than one array.
    axes : str, optional
        The dataset's axis order (e.g. ``"cxyz"``); default: from the
        ``axes`` attribute, else the trailing NGFF order.
    """

    def __init__(self, path: str, dataset: str | None = None, axes: str | None = None):
        self.path = path
        with _open(path) as f:
            if dataset is None:
                candidates = _datasets(f)
                if not candidates:
                    raise InputError(f"{path}: the file holds no array of 2 or more dimensions")
                if len(candidates) > 1:
                    names = ", ".join(d.name for d in candidates[:5])
                    more = f" and {len(candidates) - 5} more" if len(candidates) > 5 else ""
                    raise InputError(
                        f"{path} holds {len(candidates)} arrays ({names}{more}); "
                        f"choose one with --dataset or in the path ({path}{candidates[0].name})"
                    )
                ds = candidates[0]
            else:
                if dataset not in f:
                    raise InputError(f"{path}: no dataset {dataset!r}")
                ds = f[dataset]
            self.dataset = ds.name
            self.native_axes = parse_axes(
                axes or _axes_attr(ds), ds.shape, what=f"{path}:{ds.name}"
            )
            self.native_shape = tuple(ds.shape)
            self.dtype = ds.dtype
            self.voxel_size, self.unit = _physical(ds.attrs, self.native_axes)
            if ds.chunks is not None:
                perm = [self.native_axes.index(a) for a in ngff_order(self.native_axes)]
                self.chunks = tuple(ds.chunks[i] for i in perm)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "dataset": self.dataset}

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        if self._handle is None:
            self._handle = _open(self.path)
        return self._handle[self.dataset][index]


class Hdf5FrameStack(Source):
    """A group of same-shaped frame datasets, stacked along ``t`` in natural order.

    Parameters
    ----------
    path : str
        The file.
    group : str
        The group holding the frames (``"/"`` for the root).
    axes : str, optional
        Axis order of each frame (e.g. ``"cxyz"``); ``t`` is added in front.
        Default: the first frame's ``axes`` attribute, else the trailing NGFF
        order.
    """

    def __init__(self, path: str, group: str = "/", axes: str | None = None):
        import h5py

        self.path, self.group = path, group
        with _open(path) as f:
            grp = f[group]
            frames = sorted(
                (k for k, v in grp.items() if isinstance(v, h5py.Dataset)), key=natural_key
            )
            if not frames:
                raise InputError(f"{path}:{group} holds no frame datasets")
            first = grp[frames[0]]
            for name in frames[1:]:
                ds = grp[name]
                if ds.shape != first.shape or ds.dtype != first.dtype:
                    raise InputError(
                        f"{path}:{group}: frame {name} has shape {ds.shape} {ds.dtype}, "
                        f"but {frames[0]} has {first.shape} {first.dtype}"
                    )
            if axes is not None and "t" in axes.lower():
                raise InputError(f"--axes {axes!r} names the axes of one frame; t is added in front")
            frame_axes = parse_axes(
                axes or _axes_attr(first), first.shape, what=f"frame {frames[0]}"
            )
            self.frames = [f"{grp.name.rstrip('/')}/{n}" for n in frames]
            self.native_axes = "t" + frame_axes
            self.native_shape = (len(frames), *first.shape)
            self.dtype = first.dtype
            self.voxel_size, self.unit = _physical(first.attrs, frame_axes)
            if self.voxel_size is None:
                self.voxel_size, self.unit = _physical(grp.attrs, frame_axes)
            if first.chunks is not None:
                perm = [frame_axes.index(a) for a in ngff_order(frame_axes)]
                self.chunks = (1, *(first.chunks[i] for i in perm))

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        if self._handle is None:
            self._handle = _open(self.path)
        t = range(*index[0].indices(len(self.frames)))
        return np.stack([self._handle[self.frames[i]][index[1:]] for i in t])


def _numbered_frames(datasets: list[Any]) -> bool:
    """Whether ``datasets`` are two or more arrays named like ``frame_0``, ``frame_1``..."""
    stems = {re.sub(r"\d+", "#", d.name.rsplit("/", 1)[-1]) for d in datasets}
    return (
        len(datasets) >= 2 and len({d.ndim for d in datasets}) == 1
        and len(stems) == 1 and "#" in next(iter(stems))
    )


def _frame_group(f: Any) -> str | None:
    """The group whose datasets look like numbered frames of one shape, if any.

    Arrays elsewhere in the file that are smaller than one frame, or hold
    one entry smaller than a frame per frame (metadata such as per-frame
    transforms or landmark positions), do not prevent the detection.
    """
    by_parent: dict[str, list[Any]] = {}
    for d in _datasets(f):
        by_parent.setdefault(d.parent.name, []).append(d)
    groups = [name for name, datasets in by_parent.items() if _numbered_frames(datasets)]
    if len(groups) != 1:
        return None
    count = len(by_parent[groups[0]])
    frame_size = min(d.size for d in by_parent[groups[0]])

    def metadata(d: Any) -> bool:
        per_frame = d.ndim > 0 and d.shape[0] == count
        return (d.size // count if per_frame else d.size) < frame_size

    others = (d for name, ds in by_parent.items() if name != groups[0] for d in ds)
    return groups[0] if all(metadata(d) for d in others) else None


def split_hdf5_path(path: str) -> tuple[str, str] | None:
    """``("brain.h5", "/raw")`` for ``"brain.h5/raw"`` (a dataset named inside the path).

    Returns None when ``path`` names no existing HDF5 file followed by an inner path.
    """
    lower = path.lower()
    for suffix in HDF5_SUFFIXES:
        end = lower.find(suffix + "/") + len(suffix)
        if end >= len(suffix) and os.path.isfile(path[:end]) and path[end + 1:].strip("/"):
            return path[:end], path[end:]
    return None


def open_hdf5(path: str, dataset: str | None = None, axes: str | None = None) -> Source:
    """Open an HDF5 file as a single-dataset source or a frame stack.

    ``dataset`` may name a dataset or a group of frames. Without it, a file
    with one array opens that array, and a file whose arrays are numbered
    frames in one group (``frame_0``, ``frame_1``...) opens them as a stack.
    """
    import h5py

    with _open(path) as f:
        if dataset is not None:
            if dataset not in f:
                raise InputError(f"{path}: no dataset or group {dataset!r}")
            if isinstance(f[dataset], h5py.Group):
                return Hdf5FrameStack(path, dataset, axes)
            return Hdf5Source(path, dataset, axes)
        group = _frame_group(f)
    if group is not None:
        return Hdf5FrameStack(path, group, axes)
    return Hdf5Source(path, None, axes)

