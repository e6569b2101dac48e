"""Describe an OME-Zarr image: axes, shape, chunks, physical size, pyramid, completeness."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.io.ome import open_image


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


def image_info(path: str) -> dict[str, Any]:
    """A JSON-serialisable description of the OME-Zarr image at ``path``.

    Keys: ``path``, ``ngff``, ``axes``, ``shape``, ``dtype``, ``chunks``,
    ``shards``, ``voxel_size`` (z, y, x), ``unit``, ``channels``, ``levels``
    (path, shape, chunks, scale factors), ``codecs``, ``stored_bytes``,
    ``compression_ratio`` and ``complete``.
    """
    image = open_image(path)
    arr = image.array(0)
    shards = getattr(arr, "shards", None)
    level_info = []
    stored = 0
    for lvl in image.levels:
        a = image.array(image.levels.index(lvl))
        nbytes = _stored_bytes(Path(path) / lvl.path)
        stored += nbytes
        level_info.append({
            "path": lvl.path, "shape": list(a.shape), "chunks": list(a.chunks),
            "factors": list(lvl.factors), "stored_bytes": nbytes,
        })
    logical = sum(int(np.prod(lv["shape"])) for lv in level_info) * arr.dtype.itemsize
    return {
        "path": str(path),
        "ngff": image.ngff,
        "axes": image.meta.axes,
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "chunks": list(arr.chunks),
        "shards": list(shards) if shards else None,
        "voxel_size": list(image.meta.voxel_size),
        "unit": image.meta.unit,
        "channels": list(image.meta.channel_names) if image.meta.channel_names else None,
        "levels": level_info,
        "codecs": _codecs(arr),
        "stored_bytes": stored,
        "compression_ratio": round(logical / stored, 3) if stored else None,
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
        f"  shape       {fmt(info['shape'])}  {info['dtype']}",
        f"  chunks      {fmt(info['chunks'])}" + (f"  shards {fmt(info['shards'])}" if info["shards"] else ""),
        f"  voxel size  {fmt(info['voxel_size'])} {unit}  (z, y, x)",
        f"  channels    {', '.join(info['channels']) if info['channels'] else '-'}",
        f"  codecs      {', '.join(info['codecs'])}",
        f"  stored      {info['stored_bytes'] / 2**20:.1f} MiB"
        + (f", compression ratio {info['compression_ratio']:.2f}" if info["compression_ratio"] else ""),
        "  pyramid     " + "; ".join(f"{lv['path']}: {fmt(lv['shape'])}" for lv in info["levels"]),
    ]
    return "\n".join(lines)
