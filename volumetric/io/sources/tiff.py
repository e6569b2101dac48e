"""TIFF, BigTIFF, OME-TIFF and ImageJ hyperstacks, read box by box with tifffile.

Uncompressed data stored contiguously (ImageJ hyperstacks, most tifffile and
OME-TIFF files) is memory-mapped, so a box costs only its own bytes; anything
else (compressed, tiled, scattered pages) is read through tifffile's Zarr
store, which decodes only the strips or tiles a box intersects. No page
outside the box is ever decoded.

tifffile logs, rather than raises, most signs of a damaged file (an IFD
offset beyond the end, an unreadable tag); those records are turned into one
:class:`~volumetric.errors.InputError` at open, and a read that still fails
inside a block task raises one naming the file.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.io.sources.base import DEFAULT_AXES, Source, parse_axes, to_ngff
from volumetric.io.sources.tiff_metadata import physical_metadata

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")  # .ome.tif and .ome.tiff included

_AXIS_NAMES = {"X": "x", "Y": "y", "Z": "z", "T": "t", "C": "c", "S": "c"}
_SEQUENCE_AXES = "IQ"  # page sequence / unspecified: the default axes, or z, then t


@contextmanager
def tifffile_errors(path: str) -> Iterator[None]:
    """Turn the errors tifffile logs while parsing or reading into an InputError.

    tifffile's other log records are kept off stderr meanwhile, so a bad file
    gives exactly one message.
    """
    logger = logging.getLogger("tifffile")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if records:
        detail = re.sub(r"<[^>]*>\s*", "", records[0].getMessage())
        raise InputError(f"{path}: truncated or corrupted TIFF ({detail})")


def _ngff_axes(tiff_axes: str, path: str) -> str:
    """Map tifffile's axis codes (e.g. ``TZCYX``, ``IYX``, ``YXS``) to NGFF names.

    Planes without axis metadata (only ``Q``/``I`` before ``YX``) follow the
    default rule: 2D ``yx``, 3D ``zyx``, 4D ``czyx``, 5D ``tczyx``.
    """
    import tifffile

    unnamed = tiff_axes.endswith("YX") and set(tiff_axes[:-2]) <= set(_SEQUENCE_AXES)
    if unnamed and len(tiff_axes) in DEFAULT_AXES:
        return DEFAULT_AXES[len(tiff_axes)]
    names = tifffile.TIFF.AXES_NAMES
    unknown = [a for a in tiff_axes if a not in _AXIS_NAMES and a not in _SEQUENCE_AXES]
    if unknown:
        listed = ", ".join(f"{a} ({names.get(a, 'unknown')})" for a in unknown)
        raise InputError(
            f"{path}: TIFF axes {tiff_axes} include {listed}, which OME-Zarr cannot name; "
            f"give one of t, c, z, y, x per axis with --axes"
        )
    if "C" in tiff_axes and "S" in tiff_axes:
        raise InputError(
            f"{path}: TIFF axes {tiff_axes} hold both channels (C) and samples per pixel (S); "
            "such files are not supported"
        )
    mapped = [_AXIS_NAMES.get(a) for a in tiff_axes]
    free = [a for a in "zt" if a not in mapped]
    for i in reversed(range(len(mapped))):
        if mapped[i] is None:
            if not free:
                raise InputError(f"{path}: cannot name the TIFF axes {tiff_axes}; pass --axes")
            mapped[i] = free.pop(0)
    return "".join(mapped)  # type: ignore[arg-type]


def _check_extent(series: Any, path: str) -> None:
    """Refuse a file whose image data would extend beyond its end (a cut-off copy)."""
    if series.dataoffset is not None:
        end, size = series.dataoffset + series.nbytes, os.path.getsize(path)
    else:
        end = size = 0
        for page in series.pages:
            if page is None:
                continue
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
            end, size = max(ends, default=0), page.parent.filehandle.size
            if end > size:
                break
    if end > size:
        raise InputError(
            f"{path}: truncated TIFF: its image data needs {end} bytes but the file has {size}"
        )


def read_unit(series: Any) -> tuple[int, ...]:
    """The smallest box of a series that decodes nothing outside it, in its own axis order.

    One strip (all columns) or tile of a page; one row of a memory-mapped series.
    """
    page = series.keyframe
    if page.is_tiled:
        rows, columns = page.tilelength, page.tilewidth
    else:
        rows, columns = min(page.rowsperstrip, page.imagelength), page.imagewidth
    if series.dataoffset is not None and page.is_memmappable:
        rows = 1
    sizes = {"Y": rows, "X": columns, "S": page.samplesperpixel}
    return tuple(sizes.get(a, 1) for a in series.axes)


class _SeriesReader:
    """One series of an open TIFF file, read by index in its own axis order."""

    def __init__(self, path: str, series: int):
        import tifffile
        import zarr

        self.path = path
        self.tif = tifffile.TiffFile(path)
        s = self.tif.series[series]
        self.shape = tuple(s.shape)
        self.dtype = np.dtype(s.dtype).newbyteorder(self.tif.byteorder)
        self.offset = s.dataoffset if s.keyframe.is_memmappable else None
        self.array = None if self.offset is not None else zarr.open_array(
            s.aszarr(level=0), mode="r"
        )

    def read(self, index: tuple[slice, ...]) -> np.ndarray:
        if self.array is not None:
            return self.array[index]
        # Mapped per read and released at once: a long-lived map of a multi-GB
        # file would count every page ever touched in the worker's RSS.
        mapped = np.memmap(self.path, self.dtype, "r", offset=self.offset, shape=self.shape)
        try:
            return np.array(mapped[index])
        finally:
            mapped._mmap.close()  # type: ignore[attr-defined]


# Opening a file of many scattered pages walks all its IFDs, so each worker
# process keeps its last few files open; the key holds the file's size and
# mtime, so a rewritten file is opened afresh.
@functools.lru_cache(maxsize=8)
def _reader(path: str, series: int, stamp: tuple[int, int]) -> _SeriesReader:
    return _SeriesReader(path, series)


def read_tiff(path: str, index: tuple[slice, ...], *, series: int = 0) -> np.ndarray:
    """Read one box of a TIFF series, decoding only the strips or tiles it needs.

    Parameters
    ----------
    path : str
        The TIFF file.
    index : tuple of slice
        The box, one slice per axis of the (squeezed) series, in its own order.
    series : int
        Index of the series in the file.

    Raises
    ------
    InputError
        When the file cannot be read (damaged, truncated, changed).
    """
    st = os.stat(path)
    try:
        with tifffile_errors(path):
            return _reader(path, series, (st.st_size, st.st_mtime_ns)).read(index)
    except (InputError, MemoryError):
        raise
    except Exception as exc:  # tifffile, zlib, imagecodecs and numpy raise many types
        raise InputError(f"{path}: cannot read TIFF data ({type(exc).__name__}: {exc})") from None


class TiffSource(Source):
    """One image series of a TIFF, OME-TIFF or ImageJ file.

    Parameters
    ----------
    path : str
        The file.
    series : str, optional
        Index of the series to read (e.g. another OME image); default 0.
    axes : str, optional
        The series' axis order, overriding the file's metadata (one letter
        per dimension of the squeezed series, e.g. ``"zcyx"``).
    """

    def __init__(self, path: str, series: str | None = None, axes: str | None = None):
        import tifffile

        self.path = path
        try:
            self.series = int(series) if series is not None else 0
        except ValueError:
            raise InputError(f"{path}: --dataset of a TIFF is a series number, "
                             f"got {series!r}") from None
        try:
            with tifffile_errors(path), tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise InputError(f"{path}: the TIFF file holds no image")
                if not 0 <= self.series < len(tif.series):
                    raise InputError(f"{path} has {len(tif.series)} image series; "
                                     f"--dataset {self.series} is not one of them")
                s = tif.series[self.series]
                if s.dtype is None:
                    raise InputError(f"{path}: unsupported TIFF sample format")
                tiff_axes = s.axes
                native = _ngff_axes(tiff_axes, path) if axes is None else axes
                self.native_axes = parse_axes(native, s.shape, what=f"{path} (axes {tiff_axes})")
                self.native_shape = tuple(s.shape)
                self.dtype = np.dtype(s.dtype).newbyteorder("=")
                _check_extent(s, path)
                self.chunks = to_ngff(self.native_axes, read_unit(s))
                phys = physical_metadata(tif, self.series, self.native_axes)
                self.voxel_size, self.unit = phys.voxel_size, phys.unit
                self.channel_names = phys.channel_names
                if "t" in self.native_axes:
                    self.time_step, self.time_unit = phys.time_step, phys.time_unit
        except tifffile.TiffFileError as exc:
            raise InputError(f"{path}: not a readable TIFF file ({exc})") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot open ({exc.strerror or exc})") from None

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        return read_tiff(self.path, index, series=self.series).astype(self.dtype, copy=False)
