"""NumPy ``.npy`` files (memory-mapped) and existing Zarr arrays or OME-Zarr images."""

from __future__ import annotations

import os
import zlib
from itertools import product
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.io.fingerprint import tree_fingerprint
from volumetric.io.ome import SPATIAL_AXES, ImageMeta, open_image, unreadable_store
from volumetric.io.sources.base import Source, parse_axes, to_ngff


class NpySource(Source):
    """A ``.npy`` file, memory-mapped so only the requested box is read."""

    thread_safe = True

    def __init__(self, path: str, axes: str | None = None):
        self.path = path
        try:
            arr = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        self.native_axes = parse_axes(axes, arr.shape, what=path)
        self.native_shape = tuple(arr.shape)
        self.dtype = arr.dtype

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        if self._handle is None:
            self._handle = np.load(self.path, mmap_mode="r")
        return np.array(self._handle[index])

    def close(self) -> None:
        self._handle = None


def is_zarr(path: str) -> bool:
    """Whether ``path`` is a folder holding Zarr (v2 or v3) metadata."""
    return any(
        os.path.exists(os.path.join(path, name)) for name in ("zarr.json", ".zgroup", ".zarray")
    )


ZARR_READ_ERRORS = (*Source.read_errors, RuntimeError, zlib.error)


def damaged_chunk_file(array: Any, path: str, index: tuple[slice | int, ...]) -> str | None:
    """The first chunk (or shard) file of ``index`` that fails to decode, or None.

    Parameters
    ----------
    array : zarr.Array
        The open array whose read of ``index`` failed.
    path : str
        The array's folder, to name the file.
    index : tuple of slice or int
        The read that failed.

    Returns
    -------
    str or None
        The file's path; None when every chunk reads.
    """
    grid = array.shards or array.chunks
    bounds = [s.indices(n)[:2] if isinstance(s, slice) else (s, s + 1)
              for s, n in zip(index, array.shape)]
    ranges = [range(lo // g, -(-hi // g)) for (lo, hi), g in zip(bounds, grid)]
    for coords in product(*ranges):
        part = tuple(slice(c * g, min((c + 1) * g, n))
                     for c, g, n in zip(coords, grid, array.shape))
        try:
            array[part]
        except ZARR_READ_ERRORS:
            return os.path.join(path, array.metadata.encode_chunk_key(coords))
    return None


def damaged_chunk(array: Any, path: str, index: tuple[slice | int, ...]) -> str:
    """``": damaged chunk file F"`` for the first chunk (or shard) of ``index`` that fails
    (see :func:`damaged_chunk_file`); empty when every chunk reads."""
    file = damaged_chunk_file(array, path, index)
    return "" if file is None else f": damaged chunk file {file}"


class ZarrSource(Source):
    """An existing Zarr array, or level 0 of an OME-Zarr image (for rechunking).

    Parameters
    ----------
    path : str
        A Zarr array, or an OME-Zarr image group.
    dataset : str, optional
        Array path inside a group (default: the image's level 0).
    axes : str, optional
        Axis order of a plain array without NGFF or ``dimension_names`` metadata.
    """

    # numcodecs reports damaged blosc/zstd chunks as RuntimeError, gzip as zlib.error
    read_errors = ZARR_READ_ERRORS
    thread_safe = True

    def __init__(self, path: str, dataset: str | None = None, axes: str | None = None):
        import zarr

        self.path = path
        try:
            node = zarr.open(path, mode="r")
        except Exception as exc:  # zarr raises several types for unreadable stores
            raise unreadable_store(path, exc) from None
        meta = None
        if isinstance(node, zarr.Group):
            if dataset is None:
                image = open_image(path)
                if not image.complete:
                    raise InputError(f"{path} is incomplete (an interrupted run); finish it first")
                meta, dataset = image.meta, image.levels[0].path
            try:
                node = node[dataset]
            except KeyError:
                raise InputError(f"{path}: no array {dataset!r}") from None
            except ValueError as exc:  # its metadata is damaged
                raise unreadable_store(path, exc) from None
        self.array_path = os.path.join(path, dataset) if dataset else path
        names = getattr(node.metadata, "dimension_names", None)
        guess = meta.axes if meta else ("".join(names) if names and all(names) else None)
        self.native_axes = parse_axes(axes or guess, node.shape, what=path)
        self.native_shape = tuple(node.shape)
        self.dtype = node.dtype
        self.chunks = to_ngff(self.native_axes, node.chunks)
        if meta is not None:
            self._keep_metadata(meta)

    def _keep_metadata(self, meta: ImageMeta) -> None:
        """Carry over the image's physical metadata for the axes ``--axes`` still names."""
        if set(meta.spatial_axes) == set(self.native_axes) & set(SPATIAL_AXES):
            self.voxel_size, self.unit, self.origin = meta.voxel_size, meta.unit, meta.origin
        if "c" in meta.axes and "c" in self.native_axes:
            self.channel_names = meta.channel_names
        if "t" in meta.axes and "t" in self.native_axes:
            self.time_step, self.time_unit = meta.time_step, meta.time_unit

    def identity(self) -> dict[str, Any]:
        """Path, shape and the fingerprint of every file of the array read.

        Chunks rewritten in place change the fingerprint (see
        :mod:`volumetric.io.fingerprint` for its cost), so an interrupted
        run is not resumed over different data.
        """
        ident = super().identity()
        meta_file = next(
            (os.path.join(self.array_path, n) for n in ("zarr.json", ".zarray")
             if os.path.exists(os.path.join(self.array_path, n))),
            self.array_path,
        )
        try:
            ident["mtime_ns"] = os.stat(meta_file).st_mtime_ns
            ident["array_files"] = tree_fingerprint(self.array_path)
        except OSError as exc:
            raise InputError(f"{self.array_path}: cannot list its files ({exc.strerror})") from None
        return ident

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        import zarr

        if self._handle is None:
            self._handle = zarr.open_array(self.array_path, mode="r")
        return self._handle[index]

    def _damaged_file(self, index: tuple[slice, ...]) -> tuple[str, str] | None:
        """The first stored chunk (or shard) file of ``index`` that cannot be decoded."""
        if self._handle is None:
            return None
        file = damaged_chunk_file(self._handle, self.array_path, index)
        return None if file is None else (file, self.array_path)

    def close(self) -> None:
        self._handle = None
