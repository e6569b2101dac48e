"""Write a 5D stack as a TIFF for Fiji and Vaa3D, filled in place piece by piece.

Up to 4 GiB of pixels of ``uint8``, ``uint16`` or ``float32`` become an
ImageJ hyperstack (axes ``TZCYX``, x/y resolution and z spacing in the
image's unit), which Fiji and Vaa3D open directly. The ImageJ format cannot
be BigTIFF, so anything larger, or of another data type, is written as an
OME-TIFF (BigTIFF when over 4 GiB) with the same planes and physical sizes;
Fiji opens it through Bio-Formats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volumetric.kernels.display import UNIT_SYMBOLS

# Pixel bytes above which a classic (32-bit offset) TIFF is not safe; headers need room too.
CLASSIC_LIMIT = 2**32 - 2**25
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
# ImageJ names of UDUNITS units ("micron" is shown as µm by ImageJ).
IMAGEJ_UNITS = {"micrometer": "micron", "nanometer": "nm", "millimeter": "mm",
                "centimeter": "cm", "meter": "m", "angstrom": "A"}


def tiff_kind(nbytes: int, dtype: np.dtype) -> str:
    """``"imagej"`` when an ImageJ hyperstack can hold the data, else ``"ome"``."""
    return "imagej" if nbytes <= CLASSIC_LIMIT and np.dtype(dtype) in IMAGEJ_DTYPES else "ome"


def describe(kind: str, nbytes: int) -> str:
    """What :func:`create_tiff` writes, in words."""
    if kind == "imagej":
        return "ImageJ hyperstack TIFF"
    if nbytes > CLASSIC_LIMIT:
        return ("OME-TIFF (BigTIFF: over 4 GiB, which the ImageJ format cannot hold; "
                "Fiji opens it with Bio-Formats)")
    return "OME-TIFF (ImageJ TIFF takes only uint8, uint16 or float32; pass --dtype for it)"


def create_tiff(
    path: str,
    shape5: Sequence[int],
    dtype: np.dtype,
    voxel_size: Sequence[float],
    unit: str | None,
    kind: str,
) -> int:
    """Write the TIFF's header and metadata and reserve its pixels; the pixels' byte offset.

    The planes follow in ImageJ's order ``t, z, c`` (channel fastest), each
    ``Y x X``, contiguous and uncompressed, to be filled in place (see
    :func:`volumetric.io.fill.fill_planes`); the reserved space reads as zeros.

    Parameters
    ----------
    path : str
        The file to write.
    shape5 : sequence of int
        ``(T, C, Z, Y, X)``.
    dtype : numpy dtype
        Data type of the pixels.
    voxel_size : sequence of float
        ``(z, y, x)`` voxel size in ``unit``.
    unit : str or None
        UDUNITS length unit (None: pixels).
    kind : {"imagej", "ome"}
        See :func:`tiff_kind`.
    """
    import tifffile

    t, c, z, y, x = shape5
    vz, vy, vx = voxel_size
    shape = (t, z, c, y, x)
    options = {"shape": shape, "dtype": np.dtype(dtype).newbyteorder("<"), "byteorder": "<",
               "resolution": (1.0 / vx, 1.0 / vy)}
    if kind == "imagej":
        options.update(imagej=True, metadata={"axes": "TZCYX", "spacing": vz,
                                              "unit": IMAGEJ_UNITS.get(unit or "", "pixel")})
    else:
        metadata = {"axes": "TZCYX"}
        symbol = UNIT_SYMBOLS.get(unit or "")
        for axis, size in (("X", vx), ("Y", vy), ("Z", vz)):
            metadata[f"PhysicalSize{axis}"] = size
            if symbol:
                metadata[f"PhysicalSize{axis}Unit"] = symbol
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        options.update(ome=True, bigtiff=nbytes > CLASSIC_LIMIT, metadata=metadata)
    tifffile.imwrite(path, **options)
    with tifffile.TiffFile(path) as tif:
        offset = tif.series[0].dataoffset
    if offset is None:  # tifffile always writes empty series contiguously; guard the assumption
        raise RuntimeError(f"{path}: tifffile did not write contiguous pixel data")
    return int(offset)
