"""Vaa3D's raw image format (``.v3draw``): header, then voxels filled block by block.

Layout (Vaa3D ``stackutil``): the 24 ASCII bytes ``raw_image_stack_by_hpeng``,
one endianness byte (``L``), the bytes per voxel as int16 (1 = uint8,
2 = uint16, 4 = float32), the four sizes ``x, y, z, c`` as int32, then the
voxels in ``c, z, y, x`` order (x fastest), all little-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from volumetric.errors import InputError

MAGIC = b"raw_image_stack_by_hpeng"
DATATYPES = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.float32): 4}
MAX_SIZE = 2**31 - 1


def check_v3draw(sizes: Sequence[int], dtype: np.dtype) -> None:
    """Refuse what a v3draw cannot hold: another data type, a size beyond int32.

    Parameters
    ----------
    sizes : sequence of int
        ``(x, y, z, c)``.
    dtype : numpy dtype
    """
    if np.dtype(dtype) not in DATATYPES:
        raise InputError(f"v3draw holds uint8, uint16 or float32, not {np.dtype(dtype)}; "
                         "pass --dtype uint8 or --dtype uint16")
    if any(s > MAX_SIZE for s in sizes):
        raise InputError(f"v3draw sizes are int32: x, y, z, c = {tuple(sizes)} exceed {MAX_SIZE}; "
                         "export a --region")


def header(sizes: Sequence[int], dtype: np.dtype) -> bytes:
    """The 43-byte v3draw header for ``sizes = (x, y, z, c)`` voxels of ``dtype``."""
    check_v3draw(sizes, dtype)
    return MAGIC + b"L" + struct.pack("<h4i", DATATYPES[np.dtype(dtype)], *sizes)


def create_v3draw(path: str, sizes: Sequence[int], dtype: np.dtype) -> int:
    """Write the header of ``sizes = (x, y, z, c)`` voxels and reserve the data; its offset.

    The voxels, planes in ``c, z`` order, are then filled in place (see
    :func:`volumetric.io.fill.fill_planes`).
    """
    head = header(sizes, dtype)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + int(np.prod(sizes, dtype=np.int64)) * np.dtype(dtype).itemsize)
    return len(head)
