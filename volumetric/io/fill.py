"""Fill the pixel data of a preallocated, uncompressed file (TIFF, v3draw) piece by piece.

Formats such as an ImageJ hyperstack or a v3draw store every plane
contiguously at a known offset, so a piece of the image (a few planes of one
row of chunks) can be written in place as soon as it is read: each Zarr
chunk is decoded once and memory holds one piece, whatever the image size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from volumetric.io.region import Selection


def fill_planes(
    path: str,
    offset: int,
    sel: Selection,
    plane_index: Callable[[int, int, int], int],
    dtype: np.dtype,
    *,
    convert: Callable[[np.ndarray, int], np.ndarray] | None = None,
    budget_bytes: int,
    progress: Callable[[int], None] = lambda n: None,
) -> None:
    """Write every voxel of ``sel`` into ``path``, whose planes start at ``offset``.

    Parameters
    ----------
    path : str
        An existing file of the right size (header written, data preallocated).
    offset : int
        Byte offset of the first plane.
    sel : Selection
        What to write.
    plane_index : callable
        ``(t, c, z) -> n``, the plane's rank in the file (each plane ``Y x X``).
    dtype : numpy dtype
        The stored type, written little-endian.
    convert : callable, optional
        ``(rows, c) -> rows`` applied to each ``rows x X`` part of a plane of
        channel ``c`` (e.g. scaling to ``dtype``).
    budget_bytes : int
        Size of a piece read at once (see :meth:`Selection.pieces`).
    progress : callable
        Called with 1 after each piece.
    """
    little = np.dtype(dtype).newbyteorder("<")
    _, _, _, height, width = sel.shape5
    with open(path, "r+b") as f:
        for t, c, z, y in sel.pieces(budget_bytes):
            block = sel.read(slice(t, t + 1), slice(c, c + 1), z, y)[0, 0]
            for k, rows in enumerate(block):
                if convert is not None:
                    rows = convert(rows, c)
                plane = plane_index(t, c, z.start + k)
                f.seek(offset + (plane * height + y.start) * width * little.itemsize)
                f.write(np.ascontiguousarray(rows, dtype=little).data)
            progress(1)
