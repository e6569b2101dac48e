"""Voxel size, units, channel names and time step of a TIFF series.

Read from, in this order: OME-XML (``PhysicalSize{X,Y,Z}`` and their units,
``TimeIncrement``, channel ``Name``), ImageJ metadata (``spacing``, ``unit``,
``finterval`` and the X/YResolution tags), and for other TIFFs the
X/YResolution tags when their ResolutionUnit is a length (centimeter,
millimeter, micrometer; inch is a printing resolution and is ignored).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from volumetric.errors import InputError
from volumetric.io.units import normalize_unit

log = logging.getLogger("volumetric")

_METERS = {
    "picometer": 1e-12, "angstrom": 1e-10, "nanometer": 1e-9, "micrometer": 1e-6,
    "millimeter": 1e-3, "centimeter": 1e-2, "meter": 1.0,
}
_RESUNIT_MICROMETERS = {3: 1e4, 4: 1e3, 5: 1.0}  # TIFF ResolutionUnit -> micrometers


@dataclass(frozen=True)
class Physical:
    """What a TIFF says about physical size; None where it says nothing."""

    voxel_size: tuple[float, ...] | None = None  # z, y, x order, spatial axes only
    unit: str | None = None
    channel_names: tuple[str, ...] | None = None
    time_step: float | None = None
    time_unit: str | None = None


def _unit(name: Any, *, time: bool = False) -> str | None:
    try:
        return normalize_unit(name, time=time) if isinstance(name, str) else None
    except InputError:
        return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _voxel_size(
    sizes: dict[str, tuple[float | None, str | None]], spatial: str, what: str
) -> tuple[tuple[float, ...] | None, str | None]:
    """Sizes per axis (each with its unit) -> one tuple in a common unit.

    Axes without a size get 1 (with a warning) when others have one.
    """
    known = {a: (v, u) for a, (v, u) in sizes.items() if v is not None and u is not None}
    if not known:
        return None, None
    unit = known["x"][1] if "x" in known else next(iter(known.values()))[1]
    out = []
    for axis in spatial:
        value, from_unit = known.get(axis, (None, None))
        if value is not None and from_unit != unit:
            if from_unit in _METERS and unit in _METERS:
                value *= _METERS[from_unit] / _METERS[unit]  # type: ignore[index]
            else:
                value = None
        if value is None:
            log.warning("%s gives no %s voxel size; assuming 1 %s (use --voxel-size)",
                        what, axis, unit)
            value = 1.0
        out.append(value)
    return tuple(out), unit


def _ome(tif: Any, series: int, spatial: str) -> Physical | None:
    try:
        root = ElementTree.fromstring(tif.ome_metadata)
    except ElementTree.ParseError:
        return None
    images = root.findall("{*}Image")
    pixels = images[series].find("{*}Pixels") if series < len(images) else None
    if pixels is None:
        return None
    sizes = {
        a: (_number(pixels.get(f"PhysicalSize{a.upper()}")),
            _unit(pixels.get(f"PhysicalSize{a.upper()}Unit", "µm")))
        for a in spatial
    }
    voxel_size, unit = _voxel_size(sizes, spatial, tif.filename)
    names = tuple(c.get("Name") or "" for c in pixels.findall("{*}Channel"))
    return Physical(
        voxel_size, unit,
        channel_names=names if names and all(names) else None,
        time_step=_number(pixels.get("TimeIncrement")),
        time_unit=_unit(pixels.get("TimeIncrementUnit", "s"), time=True),
    )


def _imagej(tif: Any, spatial: str) -> Physical:
    meta = tif.imagej_metadata
    unit = _unit(meta.get("unit"))
    xres, yres = tif.pages.first.get_resolution()
    sizes = {
        "x": (1 / xres if xres else None, unit),
        "y": (1 / yres if yres else None, unit),
        "z": (_number(meta.get("spacing", 1.0)), unit),  # ImageJ's default depth is 1
    }
    voxel_size, unit = _voxel_size({a: sizes[a] for a in spatial}, spatial, tif.filename)
    return Physical(
        voxel_size, unit,
        time_step=_number(meta.get("finterval")),
        time_unit=_unit(meta.get("tunit", "s"), time=True),
    )


def _resolution(tif: Any, spatial: str) -> Physical:
    page = tif.pages.first
    micrometers = _RESUNIT_MICROMETERS.get(int(page.resolutionunit))
    if micrometers is None:
        return Physical()
    xres, yres = page.get_resolution()
    sizes = {
        "x": (micrometers / xres if xres else None, "micrometer"),
        "y": (micrometers / yres if yres else None, "micrometer"),
    }
    voxel_size, unit = _voxel_size(
        {a: sizes.get(a, (None, None)) for a in spatial}, spatial, tif.filename
    )
    return Physical(voxel_size, unit)


def physical_metadata(tif: Any, series: int, native_axes: str) -> Physical:
    """Physical metadata of one series of an open ``tifffile.TiffFile``.

    Parameters
    ----------
    tif : tifffile.TiffFile
        The open file.
    series : int
        Index of the series.
    native_axes : str
        The series' axes (NGFF letters); decides which spatial sizes are kept.
    """
    spatial = "".join(a for a in "zyx" if a in native_axes)
    if tif.is_ome:
        found = _ome(tif, series, spatial)
        if found is not None:
            return found
    if tif.is_imagej:
        return _imagej(tif, spatial)
    return _resolution(tif, spatial)
