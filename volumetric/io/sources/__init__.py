"""Input sources and :func:`open_source`, which picks one from a path."""

from __future__ import annotations

import glob
import os

from volumetric.errors import InputError
from volumetric.io.sources.arrays import (
    ZARR_READ_ERRORS,
    NpySource,
    ZarrSource,
    damaged_chunk,
    is_zarr,
)
from volumetric.io.sources.base import Source, parse_axes
from volumetric.io.sources.hdf5 import (
    HDF5_SUFFIXES,
    Hdf5FrameStack,
    Hdf5Source,
    open_hdf5,
    split_hdf5_path,
)
from volumetric.io.sources.images import IMAGE_SUFFIXES, ImageStack
from volumetric.io.sources.tiff import TIFF_SUFFIXES, TiffSource
from volumetric.io.sources.video import VIDEO_SUFFIXES, VideoSource

__all__ = [
    "ZARR_READ_ERRORS",
    "Hdf5FrameStack",
    "Hdf5Source",
    "ImageStack",
    "NpySource",
    "Source",
    "TiffSource",
    "VideoSource",
    "ZarrSource",
    "damaged_chunk",
    "open_source",
    "parse_axes",
    "split_hdf5_path",
]


def open_source(path: str, *, dataset: str | None = None, axes: str | None = None) -> Source:
    """Open any supported input by its path.

    Parameters
    ----------
    path : str
        HDF5 (``.h5``, ``.hdf5``...), NumPy ``.npy``, Zarr / OME-Zarr (a folder
        with Zarr metadata), TIFF / OME-TIFF / ImageJ (``.tif``, ``.tiff``,
        ``.btf``), a video (``.mp4``, ``.avi``, ``.mov``, ``.mkv``...), a folder
        or a glob pattern (``"scans/*.png"``) of 2D images stacked along z,
        or a single 2D image (``.png``, ``.jpg``...).
    dataset : str, optional
        Dataset or group inside an HDF5 file, array inside a Zarr group, or
        series number inside a TIFF file. An HDF5 dataset may also be named
        in the path: ``brain.h5/raw``.
    axes : str, optional
        The source's axis order (e.g. ``"cxyz"``), when its metadata lacks it.

    Raises
    ------
    InputError
        Missing path, unknown format, or a source that cannot be used.
    """
    path = str(path)
    lower = path.lower().rstrip("/")
    if os.path.isdir(path):
        if is_zarr(path):
            return ZarrSource(path, dataset, axes)
        if lower.endswith(".zarr"):
            raise InputError(f"{path}: a .zarr folder without Zarr metadata")
        return ImageStack(path, axes)
    if not os.path.exists(path):
        inner = split_hdf5_path(path) if dataset is None else None
        if inner is not None:
            return open_hdf5(*inner, axes)
        if glob.has_magic(path):
            return ImageStack(path, axes)
        raise InputError(f"{path}: no such file or folder")
    if lower.endswith(HDF5_SUFFIXES):
        return open_hdf5(path, dataset, axes)
    if lower.endswith(".npy"):
        return NpySource(path, axes)
    if lower.endswith(TIFF_SUFFIXES):
        return TiffSource(path, dataset, axes)
    if lower.endswith(VIDEO_SUFFIXES):
        return VideoSource(path, axes)
    if lower.endswith(IMAGE_SUFFIXES):
        return ImageStack(path, axes)
    raise InputError(f"{path}: unknown input format")
