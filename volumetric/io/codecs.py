"""Compression choices for Zarr v3 (NGFF 0.5) and Zarr v2 (NGFF 0.4) arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from volumetric.errors import InputError, check_choice

# The levels each codec accepts (zstd's negative levels are its fast modes).
LEVELS = {"blosc-zstd": (0, 9), "blosc-lz4": (0, 9), "zstd": (-131072, 22), "gzip": (0, 9),
          "none": None}
COMPRESSORS = tuple(LEVELS)
DEFAULT_COMPRESSOR = "blosc-zstd"


def parse_compressor(spec: str) -> tuple[str, int | None]:
    """Split ``"name[:level]"`` and check the name and the level's range."""
    name, _, text = spec.partition(":")
    name = name.strip().lower()
    check_choice(name, COMPRESSORS, "compressor")
    if not text:
        return name, None
    try:
        level = int(text)
    except ValueError:
        raise InputError(f"compression level in {spec!r} is not an integer") from None
    limits = LEVELS[name]
    if limits is None:
        raise InputError(f"compressor {name!r} takes no level; got {spec!r}")
    if not limits[0] <= level <= limits[1]:
        raise InputError(f"compression level {level} of {name} must be between "
                         f"{limits[0]} and {limits[1]}")
    return name, level


def make_compressors(spec: str, dtype: np.dtype, zarr_format: int) -> Any:
    """The ``compressors`` argument for :func:`zarr.create_array`.

    Blosc uses byte shuffle, or bit shuffle for 8-bit data, as recommended for
    microscopy images.
    """
    name, level = parse_compressor(spec)
    dtype = np.dtype(dtype)
    if name == "none":
        return None
    if zarr_format == 3:
        from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

        if name.startswith("blosc"):
            shuffle = "bitshuffle" if dtype.itemsize == 1 else "shuffle"
            return BloscCodec(
                cname=name.split("-")[1], clevel=5 if level is None else level,
                shuffle=shuffle, typesize=dtype.itemsize,
            )
        if name == "zstd":
            return ZstdCodec(level=3 if level is None else level)
        return GzipCodec(level=5 if level is None else level)
    from numcodecs import GZip, Blosc, Zstd

    if name.startswith("blosc"):
        shuffle = Blosc.BITSHUFFLE if dtype.itemsize == 1 else Blosc.SHUFFLE
        return Blosc(cname=name.split("-")[1], clevel=5 if level is None else level,
                     shuffle=shuffle)
    if name == "zstd":
        return Zstd(level=3 if level is None else level)
    return GZip(level=5 if level is None else level)
