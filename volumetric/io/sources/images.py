"""2D images (TIFF, PNG, JPEG, BMP...) stacked along z, from a folder or a glob pattern.

Files are sorted in natural order (``img_2`` before ``img_10``) and must all
have the same shape and data type; RGB(A) images get a ``c`` axis. A block
task reads only the files of its planes: TIFF planes through
:func:`~volumetric.io.sources.tiff.read_tiff` (only the strips or bytes of the
box), other formats decoded whole by Pillow (through imageio) and cropped.
"""

from __future__ import annotations

import glob
import hashlib
import os
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.io.sources.base import Source, natural_key, parse_axes, to_ngff
from volumetric.io.sources.tiff import TIFF_SUFFIXES, read_tiff, read_unit, tifffile_errors

IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".jp2")


def _is_tiff(path: str) -> bool:
    return path.lower().endswith(TIFF_SUFFIXES)


def _props(path: str) -> tuple[tuple[int, ...], np.dtype, tuple[int, ...]]:
    """Shape, dtype and smallest efficient read of one 2D image, from its header only."""
    try:
        if _is_tiff(path):
            import tifffile

            with tifffile_errors(path), tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                dtype = np.dtype(series.dtype).newbyteorder("=")
                return tuple(series.shape), dtype, read_unit(series)
        import imageio.v3 as iio

        props = iio.improps(path, plugin="pillow")
        return tuple(props.shape), np.dtype(props.dtype), tuple(props.shape)
    except InputError:
        raise
    except Exception as exc:  # imageio and tifffile raise many types for unreadable files
        raise InputError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def list_images(path: str) -> list[str]:
    """The image files of a folder, or the files matching a glob pattern, in natural order."""
    if os.path.isdir(path):
        files = [
            os.path.join(path, name) for name in os.listdir(path)
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)
        ]
        what = f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})"
    else:
        files = [f for f in glob.glob(path) if os.path.isfile(f)]
        what = f"no files match {path}"
    if not files:
        raise InputError(what)
    return sorted(files, key=natural_key)


class ImageStack(Source):
    """Same-shaped 2D images stacked along z (or t, with ``axes``).

    Parameters
    ----------
    path : str
        A folder of images, a glob pattern (``"scans/*.png"``), or one image
        file (a 2D source without the stacking axis).
    axes : str, optional
        Axis order of the stack, e.g. ``"tyx"`` for a time series of
        grayscale images or ``"zyxc"`` for RGB slices (``"yx"`` / ``"yxc"``
        for one file). Default: ``zyx``, plus ``c`` for RGB(A) images.
    """

    def __init__(self, path: str, axes: str | None = None):
        self.path = path
        self.stacked = os.path.isdir(path) or not os.path.isfile(path)
        self.files = list_images(path) if self.stacked else [path]
        shape, dtype, unit = _props(self.files[0])
        for name in self.files[1:]:
            other = _props(name)[:2]
            if other != (shape, dtype):
                raise InputError(
                    f"{name}: shape {other[0]} {other[1]} differs from {self.files[0]}: "
                    f"{shape} {dtype}; all images of a stack must match"
                )
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)):
            raise InputError(f"{self.files[0]}: not a 2D grayscale or RGB image (shape {shape})")
        self.plane_shape, self.dtype = shape, dtype
        self.native_shape = (len(self.files), *shape) if self.stacked else shape
        default = ("zyx" if self.stacked else "yx") + ("c" if len(shape) == 3 else "")
        what = f"{path} ({len(self.files)} images of shape {shape})"
        self.native_axes = parse_axes(axes or default, self.native_shape, what=what)
        if self.stacked and (self.native_axes[1:3] != "yx" or self.native_axes[3:] not in "c"):
            raise InputError(f"--axes {axes!r}: a stack's axes are the stacking axis (z, t or c), "
                             "then y, x, then c for RGB images: e.g. zyx, tyx, zyxc")
        self.chunks = to_ngff(self.native_axes, (1, *unit) if self.stacked else unit)

    def identity(self) -> dict[str, Any]:
        stats = hashlib.sha256()
        for name in self.files:
            st = os.stat(name)
            stats.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {
            "path": os.path.abspath(self.path),
            "files": len(self.files),
            "files_sha256": stats.hexdigest(),
            "axes": self.native_axes,
            "shape": list(self.native_shape),
            "dtype": str(self.dtype),
        }

    def _read_plane(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        if _is_tiff(name):
            return read_tiff(name, index).astype(self.dtype, copy=False)
        import imageio.v3 as iio

        try:
            plane = iio.imread(name, plugin="pillow")
        except Exception as exc:  # imageio's plugins raise many types for damaged files
            raise InputError(f"{name}: cannot read ({type(exc).__name__}: {exc})") from None
        if plane.shape != self.plane_shape or plane.dtype != self.dtype:
            raise InputError(f"{name}: decoded as {plane.shape} {plane.dtype}, expected "
                             f"{self.plane_shape} {self.dtype}")
        return plane[index]

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        if not self.stacked:
            return self._read_plane(self.files[0], index)
        names = self.files[index[0]]
        return np.stack([self._read_plane(name, index[1:]) for name in names])
