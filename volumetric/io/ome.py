"""Create and open OME-Zarr images (NGFF 0.5 on Zarr v3, NGFF 0.4 on Zarr v2).

An image is a Zarr group holding one array per pyramid level (``0`` is full
resolution) with axes in NGFF order ``t, c, z, y, x`` (only those present).

Outputs are created in two steps so that an interrupted run never looks
complete: :func:`create_image` makes the group and its empty arrays and
records the metadata under the group attribute ``volumetric`` with
``complete: false``; :func:`finalize_image` writes the OME ``multiscales``
metadata and flips ``complete`` once every block has been written. Readers
such as napari only recognise the image after that second step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from volumetric._version import __version__
from volumetric.errors import InputError
from volumetric.io.codecs import DEFAULT_COMPRESSOR, make_compressors
from volumetric.io.intensity import display_windows
from volumetric.io.units import normalize_unit

if TYPE_CHECKING:
    from volumetric.io.ngff import NgffImage

# Default display colours of channels (OME ``omero`` metadata and previews), cycled.
CHANNEL_COLOURS = ("00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF", "FFFFFF")
NGFF_AXES = "tczyx"
SPATIAL_AXES = "zyx"
NGFF_VERSIONS = ("0.5", "0.4")


def check_axes(axes: str) -> str:
    """Check that ``axes`` is a subsequence of ``tczyx`` with at least y and x."""
    axes = axes.lower()
    it = iter(NGFF_AXES)
    if not all(a in it for a in axes) or not {"y", "x"} <= set(axes):
        raise InputError(f"axes {axes!r} are not in NGFF order t,c,z,y,x with y and x present")
    return axes


@dataclass(frozen=True)
class ImageMeta:
    """Axes and physical metadata of an image.

    Parameters
    ----------
    axes : str
        Axis names in NGFF order, e.g. ``"czyx"``.
    voxel_size : tuple of float
        One size per spatial axis present, in ``z, y, x`` order.
    unit : str, optional
        UDUNITS-2 length unit of ``voxel_size`` (None when unknown).
    channel_names : tuple of str, optional
        One name per channel.
    time_step : float, optional
        Interval between time points, in ``time_unit``.
    time_unit : str, optional
        UDUNITS-2 time unit.
    name : str, optional
        Image name stored in the multiscales metadata.
    origin : tuple of float, optional
        Physical position of the first voxel's centre, one value per spatial
        axis in ``z, y, x`` order (the NGFF translation of level 0); None: 0.
    """

    axes: str
    voxel_size: tuple[float, ...]
    unit: str | None = None
    channel_names: tuple[str, ...] | None = None
    time_step: float | None = None
    time_unit: str | None = None
    name: str | None = None
    origin: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", check_axes(self.axes))
        n = len(self.spatial_axes)
        voxel = tuple(float(v) for v in self.voxel_size)
        if len(voxel) != n:
            raise InputError(
                f"voxel size {voxel} needs {n} values, one per spatial axis {self.spatial_axes}"
            )
        if any(not np.isfinite(v) or v <= 0 for v in voxel):
            raise InputError(f"voxel size {voxel} must be positive")
        object.__setattr__(self, "voxel_size", voxel)
        if self.origin is not None:
            origin = tuple(float(v) for v in self.origin)
            if len(origin) != n or not all(np.isfinite(origin)):
                raise InputError(f"origin {origin} needs {n} finite values, one per spatial "
                                 f"axis {self.spatial_axes}")
            object.__setattr__(self, "origin", origin if any(origin) else None)
        object.__setattr__(self, "unit", normalize_unit(self.unit))
        object.__setattr__(self, "time_unit", normalize_unit(self.time_unit, time=True))
        if self.channel_names is not None:
            object.__setattr__(self, "channel_names", tuple(str(c) for c in self.channel_names))

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.axes if a in SPATIAL_AXES)

    def scale(self, factors: Sequence[int] | None = None) -> list[float]:
        """The NGFF scale vector (one entry per axis) at a pyramid level.

        ``factors`` are the level's downsampling factors per axis.
        """
        factors = factors or [1] * len(self.axes)
        spatial = iter(self.voxel_size)
        out = []
        for axis, f in zip(self.axes, factors):
            if axis in SPATIAL_AXES:
                out.append(next(spatial) * f)
            elif axis == "t":
                out.append(float(self.time_step or 1.0) * f)
            else:
                out.append(1.0)
        return out

    def translation(self, factors: Sequence[int] | None = None,
                    method: str = "mean") -> list[float] | None:
        """The NGFF translation vector at a pyramid level, or None when it is all 0.

        A ``mean`` level's first voxel averages the first ``f`` voxels, so its
        centre lies ``(f - 1) / 2`` fine voxels further than the origin; a
        ``nearest`` level keeps the first voxel and the origin.
        """
        factors = factors or [1] * len(self.axes)
        origin = iter(self.origin or (0.0,) * len(self.voxel_size))
        spatial = iter(self.voxel_size)
        out = []
        for axis, f in zip(self.axes, factors):
            if axis in SPATIAL_AXES:
                shift = (f - 1) / 2 * next(spatial) if method == "mean" else 0.0
                out.append(next(origin) + shift)
            else:
                out.append(0.0)
        return out if any(out) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "axes": self.axes,
            "voxel_size": list(self.voxel_size),
            "unit": self.unit,
            "channel_names": list(self.channel_names) if self.channel_names else None,
            "time_step": self.time_step,
            "time_unit": self.time_unit,
            "name": self.name,
            **({"origin": list(self.origin)} if self.origin else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageMeta:
        names = data.get("channel_names")
        return cls(
            axes=data["axes"],
            voxel_size=tuple(data["voxel_size"]),
            unit=data.get("unit"),
            channel_names=tuple(names) if names else None,
            time_step=data.get("time_step"),
            time_unit=data.get("time_unit"),
            name=data.get("name"),
            origin=tuple(data["origin"]) if data.get("origin") else None,
        )


@dataclass(frozen=True)
class LevelSpec:
    """One pyramid level: its array path, shape and factors relative to level 0."""

    path: str
    shape: tuple[int, ...]
    factors: tuple[int, ...]


@dataclass
class OmeImage:
    """An opened OME-Zarr image (complete or still being written)."""

    path: str
    meta: ImageMeta
    levels: list[LevelSpec]
    ngff: str
    complete: bool
    attrs: dict[str, Any] = field(default_factory=dict)

    def array(self, level: int = 0, *, mode: str = "r") -> Any:
        """The Zarr array of pyramid level ``level``."""
        import zarr

        return zarr.open_array(str(Path(self.path) / self.levels[level].path), mode=mode)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.levels[0].shape


def create_image(
    path: str | Path,
    meta: ImageMeta,
    levels: Sequence[LevelSpec],
    *,
    dtype: Any,
    chunks: Sequence[int],
    shards: Sequence[int] | None = None,
    ngff: str = "0.5",
    compressor: str = DEFAULT_COMPRESSOR,
    fill_value: Any = 0,
    extra_attrs: dict[str, Any] | None = None,
) -> None:
    """Create an incomplete OME-Zarr image group with empty arrays for every level.

    Parameters
    ----------
    path : str or Path
        The group to create: a missing or empty folder (files that are not Zarr, such
        as a journal, are kept); an existing group is refused.
    meta : ImageMeta
        Axes and physical metadata.
    levels : sequence of LevelSpec
        Pyramid levels; the first one is full resolution.
    dtype : numpy dtype
        Data type of every level.
    chunks : tuple of int
        Chunk shape (clipped to each level's shape).
    shards : tuple of int, optional
        Shard shape (NGFF 0.5 only); a multiple of ``chunks``.
    ngff : {"0.5", "0.4"}
        NGFF version: 0.5 writes Zarr v3, 0.4 writes Zarr v2.
    compressor : str
        See :mod:`volumetric.io.codecs`.
    fill_value : scalar
        Value of chunks that are never written.
    extra_attrs : dict, optional
        Additional entries for the ``volumetric`` group attribute; ``downsample``
        (``mean``, the default, or ``nearest``) places the levels' translations,
        and ``image_label`` (the NGFF ``image-label`` metadata, e.g. its
        ``source``) makes the image a label image.
    """
    import zarr

    if ngff not in NGFF_VERSIONS:
        raise InputError(f"unknown NGFF version {ngff!r}; choose 0.5 or 0.4")
    zarr_format = 3 if ngff == "0.5" else 2
    if shards is not None and zarr_format == 2:
        raise InputError("--shards needs NGFF 0.5 (Zarr v3); NGFF 0.4 has no sharding")
    dtype = np.dtype(dtype)
    attrs = {
        "volumetric": {
            "version": __version__,
            "complete": False,
            "ngff": ngff,
            "meta": meta.to_json(),
            "levels": [
                {"path": lv.path, "shape": list(lv.shape), "factors": list(lv.factors)}
                for lv in levels
            ],
            **(extra_attrs or {}),
        }
    }
    group = zarr.create_group(str(path), zarr_format=zarr_format, attributes=attrs)
    for lvl in levels:
        lvl_chunks = tuple(min(c, s) for c, s in zip(chunks, lvl.shape))
        lvl_shards = None
        if shards is not None:
            lvl_shards = tuple(
                max(c, min(sh, -(-s // c) * c)) for sh, c, s in zip(shards, lvl_chunks, lvl.shape)
            )
        kwargs: dict[str, Any] = {}
        if zarr_format == 3:
            kwargs["dimension_names"] = list(meta.axes)
        else:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        group.create_array(
            lvl.path,
            shape=lvl.shape,
            dtype=dtype,
            chunks=lvl_chunks,
            shards=lvl_shards,
            compressors=make_compressors(compressor, dtype, zarr_format),
            fill_value=fill_value,
            **kwargs,
        )


def finalize_image(path: str | Path) -> None:
    """Write the OME metadata of an image made by :func:`create_image` and mark it complete.

    The omero display window of each channel comes from the data's
    percentiles (see :func:`~volumetric.io.intensity.display_windows`), so
    viewers open the image with a useful contrast.
    """
    from volumetric.io.ngff import ome_attributes  # pydantic models: only when written

    import zarr

    group = zarr.open_group(str(path), mode="r+")
    vol = dict(group.attrs["volumetric"])
    meta = ImageMeta.from_json(vol["meta"])
    levels = [LevelSpec(d["path"], tuple(d["shape"]), tuple(d["factors"])) for d in vol["levels"]]
    channel_axis = meta.axes.index("c") if "c" in meta.axes else None
    windows = display_windows(group[levels[0].path], channel_axis=channel_axis)
    vol["complete"] = True
    group.attrs.update({**ome_attributes(meta, levels, vol.get("downsample", "mean"), windows,
                                         vol["ngff"], vol.get("image_label")),
                        "volumetric": vol})


def _meta_from_ngff(found: NgffImage) -> ImageMeta:
    spatial = [a for a in found.axes if a in SPATIAL_AXES]
    level0 = dict(zip(found.axes, found.scales[0]))
    origin = dict(zip(found.axes, found.origin))
    return ImageMeta(
        axes=found.axes,
        voxel_size=tuple(level0[a] for a in spatial),
        unit=next((found.units[a] for a in spatial if found.units.get(a)), None),
        channel_names=found.channel_names,
        time_step=level0.get("t"),
        time_unit=found.units.get("t"),
        name=found.name,
        origin=tuple(origin[a] for a in spatial),
    )


METADATA_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs")


def _broken_metadata(path: str) -> str | None:
    """The first Zarr metadata file of the group ``path`` or of its arrays that is not JSON."""
    folders = [Path(path)]
    try:
        folders += sorted(p for p in Path(path).iterdir() if p.is_dir())
    except OSError:
        pass
    for folder in folders:
        for name in METADATA_FILES:
            try:
                json.loads((folder / name).read_bytes())
            except (OSError, RecursionError):
                continue
            except ValueError as exc:
                return f"{folder / name}: not valid JSON ({exc})"
    return None


def unreadable_store(path: str | Path, exc: Exception) -> InputError:
    """The error for a Zarr store that cannot be opened, naming its broken metadata file if any.

    Parameters
    ----------
    path : str or Path
        The store, group or array.
    exc : Exception
        What Zarr raised.
    """
    found = _broken_metadata(str(path))
    return InputError(found or f"{path}: not a readable Zarr store ({type(exc).__name__}: {exc})")


def open_image(path: str | Path) -> OmeImage:
    """Open an OME-Zarr image group, complete or not.

    Stores written by volumetric report ``complete=False`` until every block
    is written; other OME-Zarr images are assumed complete.

    Raises
    ------
    InputError
        When ``path`` is not an OME-Zarr image.
    """
    from volumetric.io.ngff import read_ngff  # pydantic models: only when read

    import zarr

    path = str(path)
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise InputError(f"{path} is not a Zarr group: {exc}") from None
    except ValueError as exc:  # e.g. a zarr.json that is not JSON
        raise unreadable_store(path, exc) from None
    attrs = group.attrs.asdict()
    vol = attrs.get("volumetric") or {}
    found = read_ngff(attrs, path)
    if found:
        meta = _meta_from_ngff(found)
        levels = []
        for level_path, scale in zip(found.paths, found.scales):
            try:
                shape = tuple(group[level_path].shape)
            except ValueError as exc:  # the array's metadata is damaged
                raise unreadable_store(path, exc) from None
            factors = tuple(max(1, round(s / s0)) for s, s0 in zip(scale, found.scales[0]))
            levels.append(LevelSpec(level_path, shape, factors))
        ngff, complete = found.version, bool(vol.get("complete", True))
    elif vol:
        meta = ImageMeta.from_json(vol["meta"])
        levels = [LevelSpec(d["path"], tuple(d["shape"]), tuple(d["factors"])) for d in vol["levels"]]
        ngff, complete = vol["ngff"], False
    else:
        raise InputError(f"{path} is a Zarr group without OME-NGFF multiscales metadata")
    return OmeImage(path, meta, levels, str(ngff), complete, attrs)


def with_axes(meta: ImageMeta, axes: str, **changes: Any) -> ImageMeta:
    """A copy of ``meta`` restricted (or extended with ``c``) to ``axes``.

    Useful for derived images, e.g. a prediction with a channel axis added or
    a projection with one spatial axis removed.
    """
    spatial = dict(zip(meta.spatial_axes, meta.voxel_size))
    voxel = tuple(spatial.get(a, 1.0) for a in axes if a in SPATIAL_AXES)
    origin = dict(zip(meta.spatial_axes, meta.origin or (0.0,) * len(meta.voxel_size)))
    shift = tuple(origin.get(a, 0.0) for a in axes if a in SPATIAL_AXES)
    names = meta.channel_names if "c" in axes and "c" in meta.axes else None
    return replace(meta, axes=axes, voxel_size=voxel, channel_names=names, origin=shift,
                   **changes)
