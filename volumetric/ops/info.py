"""Describe an OME-Zarr image: axes, shape, chunks, physical size, pyramid, completeness."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.io.ome import OmeImage, open_image


def _stored_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _codec_name(codec: Any) -> str:
    name = type(codec).__name__.removesuffix("Codec").lower()
    cname = getattr(codec, "cname", None)
    if cname is not None:
        name += f"-{getattr(cname, 'value', cname)}"
    inner = getattr(codec, "codecs", None)
    if inner:  # sharding: name what is inside the shards
        name += "(" + ",".join(_codec_name(c) for c in inner) + ")"
    return name


def _codecs(array: Any) -> list[str]:
    meta = array.metadata
    if getattr(meta, "zarr_format", 3) == 2:
        comp = meta.compressor
        return [comp.codec_id if comp is not None else "none"]
    return [_codec_name(c) for c in meta.codecs]


def _level_array(image: OmeImage, level: int) -> Any:
    """The array of ``level``, or None when an interrupted run never created it."""
    try:
        return image.array(level)
    except FileNotFoundError:
        if image.complete:
            raise InputError(f"{image.path}: array {image.levels[level].path} is missing; "
                             "the image is damaged") from None
        return None


def image_info(path: str) -> dict[str, Any]:
    """A JSON-serialisable description of the OME-Zarr image at ``path``.

    Keys: ``path``, ``ngff``, ``axes``, ``shape``, ``dtype``, ``chunks``,
    ``shards``, ``voxel_size`` (z, y, x), ``unit``, ``channels``, ``levels``
    (path, shape, chunks, scale factors), ``codecs``, ``stored_bytes``,
    ``compression_ratio`` and ``complete``. A run interrupted before it
    created its arrays leaves ``dtype``, ``chunks`` and ``shards`` None.
    """
    image = open_image(path)
    arrays = [_level_array(image, k) for k in range(len(image.levels))]
    arr = arrays[0]
    shards = getattr(arr, "shards", None)
    level_info = []
    stored = 0
    for lvl, a in zip(image.levels, arrays):
        nbytes = _stored_bytes(Path(path) / lvl.path)
        stored += nbytes
        level_info.append({
            "path": lvl.path, "shape": list(a.shape if a is not None else lvl.shape),
            "chunks": list(a.chunks) if a is not None else None,
            "factors": list(lvl.factors), "stored_bytes": nbytes,
        })
    logical = 0
    if arr is not None:
        logical = sum(int(np.prod(lv["shape"])) for lv in level_info) * arr.dtype.itemsize
    return {
        "path": str(path),
        "ngff": image.ngff,
        "axes": image.meta.axes,
        "shape": level_info[0]["shape"],
        "dtype": str(arr.dtype) if arr is not None else None,
        "chunks": level_info[0]["chunks"],
        "shards": list(shards) if shards else None,
        "voxel_size": list(image.meta.voxel_size),
        "unit": image.meta.unit,
        "channels": list(image.meta.channel_names) if image.meta.channel_names else None,
        "levels": level_info,
        "codecs": _codecs(arr) if arr is not None else [],
        "stored_bytes": stored,
        "compression_ratio": round(logical / stored, 3) if stored and logical else None,
        "complete": image.complete,
    }


def format_info(info: dict[str, Any]) -> str:
    """Human-readable multi-line rendering of :func:`image_info`."""
    def fmt(values: Any) -> str:
        return " x ".join(str(v) for v in values) if values else "-"

    unit = info["unit"] or "(no unit)"
    status = "complete" if info["complete"] else "INCOMPLETE (interrupted; rerun to resume)"
    lines = [
        f"{info['path']}  (OME-NGFF {info['ngff']}, {status})",
        f"  axes        {info['axes']}",
        f"  shape       {fmt(info['shape'])}  {info['dtype'] or '(arrays not created)'}",
        f"  chunks      {fmt(info['chunks'])}" + (f"  shards {fmt(info['shards'])}" if info["shards"] else ""),
        f"  voxel size  {fmt(info['voxel_size'])} {unit}  (z, y, x)",
        f"  channels    {', '.join(info['channels']) if info['channels'] else '-'}",
        f"  codecs      {', '.join(info['codecs']) or '-'}",
        f"  stored      {info['stored_bytes'] / 2**20:.1f} MiB"
        + (f", compression ratio {info['compression_ratio']:.2f}" if info["compression_ratio"] else ""),
        "  pyramid     " + "; ".join(f"{lv['path']}: {fmt(lv['shape'])}" for lv in info["levels"]),
    ]
    return "\n".join(lines)
