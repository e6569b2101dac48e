"""NGFF image metadata written and read through the ome-zarr-models pydantic models.

:func:`ome_attributes` builds the ``multiscales`` and ``omero`` metadata of
an image (and the ``image-label`` metadata of a label image) as models and
dumps them as the group attributes of NGFF 0.5 or 0.4. :func:`read_ngff`
parses an image's attributes through the same models; a foreign store
that the models refuse (NGFF 0.3 axes given as names, axes without types,
scales out of order) is still read, from its unvalidated pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ome_zarr_models.common.coordinate_transformations import VectorScale, VectorTranslation
from ome_zarr_models.common.omero import Channel, Omero, Window
from ome_zarr_models.v04.axes import Axis as Axis04
from ome_zarr_models.v04.image import ImageAttrs as ImageAttrs04
from ome_zarr_models.v04.image_label import ImageLabelAttrs as ImageLabelAttrs04
from ome_zarr_models.v04.image_label_types import Label as Label04
from ome_zarr_models.v04.labels import LabelsAttrs as LabelsAttrs04
from ome_zarr_models.v04.multiscales import Dataset as Dataset04
from ome_zarr_models.v04.multiscales import Multiscale as Multiscale04
from ome_zarr_models.v05.axes import Axis
from ome_zarr_models.v05.image import ImageAttrs
from ome_zarr_models.v05.image_label import ImageLabelAttrs
from ome_zarr_models.v05.image_label_types import Label
from ome_zarr_models.v05.labels import LabelsAttrs
from ome_zarr_models.v05.multiscales import Dataset, Multiscale
from pydantic import ValidationError

from volumetric.errors import InputError
from volumetric.io.ome import CHANNEL_COLOURS

if TYPE_CHECKING:
    from volumetric.io.ome import ImageMeta, LevelSpec

AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(exclude_none=True, by_alias=True, mode="json")


def multiscale(meta: ImageMeta, levels: Sequence[LevelSpec], method: str,
               version: str = "0.5") -> Multiscale | Multiscale04:
    """The multiscale of an image: axes with units, one scale and translation per level.

    Parameters
    ----------
    meta : ImageMeta
        Axes and physical metadata.
    levels : sequence of LevelSpec
        Pyramid levels, full resolution first.
    method : {"mean", "nearest"}
        How the levels were downsampled, which places their first voxel.
    version : {"0.5", "0.4"}
        The NGFF version of the model (0.4 states its version in the multiscale).
    """
    model, dataset, axis = ((Multiscale, Dataset, Axis) if version == "0.5"
                            else (Multiscale04, Dataset04, Axis04))
    units = {"t": meta.time_unit, "z": meta.unit, "y": meta.unit, "x": meta.unit}
    return model(
        axes=[axis(name=a, type=AXIS_TYPES[a], unit=units.get(a)) for a in meta.axes],
        datasets=tuple(
            dataset.build(path=lvl.path, scale=meta.scale(lvl.factors),
                          translation=meta.translation(lvl.factors, method))
            for lvl in levels
        ),
        name=meta.name or "image",
        **({} if version == "0.5" else {"version": "0.4"}),
    )


def omero(meta: ImageMeta, windows: Sequence[dict[str, float]], **extra: Any) -> Omero:
    """The omero metadata: one channel per display window (one for an image without ``c``).

    ``extra`` entries (e.g. ``version``) are added to the top level.
    """
    names = meta.channel_names or ()
    single = "c" not in meta.axes
    return Omero(
        channels=[
            Channel(label=names[i] if i < len(names) else f"channel {i}",
                    color="FFFFFF" if single else CHANNEL_COLOURS[i % len(CHANNEL_COLOURS)],
                    active=True, window=Window(**window))
            for i, window in enumerate(windows)
        ],
        rdefs={"model": "greyscale" if single else "color"},
        **extra,
    )


def ome_attributes(meta: ImageMeta, levels: Sequence[LevelSpec], method: str,
                   windows: Sequence[dict[str, float]], version: str,
                   image_label: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OME group attributes of an image in NGFF ``version`` ("0.5" or "0.4").

    Parameters
    ----------
    meta, levels, method
        See :func:`multiscale`.
    windows : sequence of dict
        The omero display window of each channel.
    version : {"0.5", "0.4"}
        NGFF 0.5 nests everything under ``ome``; 0.4 writes ``multiscales``
        and ``omero`` at the top level, each with its version.
    image_label : dict, optional
        The ``image-label`` metadata of a label image (e.g. its ``source``),
        which makes the attributes those of a label image.
    """
    ms = multiscale(meta, levels, method, version)
    if version == "0.5":
        if image_label is None:
            attrs = ImageAttrs(version="0.5", multiscales=[ms], omero=omero(meta, windows))
        else:
            attrs = ImageLabelAttrs(version="0.5", multiscales=[ms], omero=omero(meta, windows),
                                    image_label=Label.model_validate(image_label))
        return {"ome": _dump(attrs)}
    if image_label is None:
        attrs = ImageAttrs04(multiscales=[ms], omero=omero(meta, windows, version="0.4"))
    else:
        attrs = ImageLabelAttrs04(multiscales=[ms], omero=omero(meta, windows, version="0.4"),
                                  image_label=Label04.model_validate(
                                      {"version": "0.4", **image_label}))
    return _dump(attrs)


def labels_attributes(names: Sequence[str], version: str) -> dict[str, Any]:
    """The attributes of an image's ``labels`` group listing the label images ``names``."""
    if version == "0.5":
        return {"ome": _dump(LabelsAttrs(version="0.5", labels=list(names)))}
    return _dump(LabelsAttrs04(labels=list(names)))


def label_names(attrs: dict[str, Any]) -> list[str]:
    """The label images a ``labels`` group's attributes list (NGFF 0.5 or 0.4)."""
    return list((attrs.get("ome") or attrs).get("labels") or [])


@dataclass(frozen=True)
class NgffImage:
    """What an image's NGFF metadata says about its axes and levels.

    Attributes
    ----------
    version : str
        The NGFF version ("0.5", "0.4", or what a foreign store states).
    axes : str
        Axis names, lower case.
    units : dict
        Unit (or None) of each axis.
    name : str or None
        The multiscale's name.
    paths : tuple of str
        Array path of each level.
    scales : tuple of tuple of float
        Physical size of a voxel of each level along each axis.
    origin : tuple of float
        Physical position of level 0's first voxel along each axis.
    channel_names : tuple of str or None
        The omero channel labels.
    """

    version: str
    axes: str
    units: dict[str, Any]
    name: str | None
    paths: tuple[str, ...]
    scales: tuple[tuple[float, ...], ...]
    origin: tuple[float, ...]
    channel_names: tuple[str, ...] | None


def _unchecked(ms: dict[str, Any]) -> Multiscale:
    """``ms`` assembled from validated axes and transforms, without the multiscale's own checks."""
    def transforms(items: Any) -> tuple[VectorScale | VectorTranslation, ...]:
        kinds = {"scale": VectorScale, "translation": VectorTranslation}
        return tuple(kinds[t["type"]].model_validate(t) for t in items or ()
                     if isinstance(t, dict) and t.get("type") in kinds)

    axes = [Axis(name=a, type=AXIS_TYPES.get(a.lower())) if isinstance(a, str)
            else Axis.model_validate(a) for a in ms["axes"]]
    datasets = tuple(Dataset.model_construct(
        path=ds["path"], coordinateTransformations=transforms(ds.get("coordinateTransformations")))
        for ds in ms["datasets"])
    return Multiscale.model_construct(
        axes=axes, datasets=datasets, name=ms.get("name"),
        coordinateTransformations=transforms(ms.get("coordinateTransformations")))


def _vectors(transforms: Any, ndim: int) -> tuple[list[float], list[float]]:
    """The scale (ones when absent) and translation (zeros) of a list of transforms."""
    scale, translation = [1.0] * ndim, [0.0] * ndim
    for tr in transforms or ():
        if isinstance(tr, VectorScale):
            scale = [float(v) for v in tr.scale]
        elif isinstance(tr, VectorTranslation):
            translation = [float(v) for v in tr.translation]
    return scale, translation


def read_ngff(attrs: dict[str, Any], path: str) -> NgffImage | None:
    """Parse the NGFF 0.5 or 0.4 image metadata of the group attributes ``attrs``.

    Returns None when ``attrs`` hold no ``multiscales``.

    Raises
    ------
    InputError
        When the multiscales metadata is too damaged to read even unvalidated.
    """
    ome = attrs.get("ome") or {}
    found = ome.get("multiscales") or attrs.get("multiscales")
    if not found:
        return None
    raw = found[0]
    version = str(ome.get("version") or raw.get("version") or "0.4")
    try:
        ms = (Multiscale if version == "0.5" else Multiscale04).model_validate(raw)
    except ValidationError:
        try:
            ms = _unchecked(raw)
        except (ValidationError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: unreadable NGFF multiscales metadata ({exc})") from None
    axes = "".join(str(a.name) for a in ms.axes).lower()
    scales, translations = zip(*(_vectors(ds.coordinateTransformations, len(axes))
                                 for ds in ms.datasets))
    scale, shift = _vectors(ms.coordinateTransformations, len(axes))
    origin = tuple(t * s + g for t, s, g in zip(translations[0], scale, shift))
    channels = (ome.get("omero") or attrs.get("omero") or {}).get("channels")
    return NgffImage(
        version=version,
        axes=axes,
        units={str(a.name).lower(): a.unit for a in ms.axes},
        name=ms.name,
        paths=tuple(ds.path for ds in ms.datasets),
        scales=tuple(tuple(v * s for v, s in zip(level, scale)) for level in scales),
        origin=origin,
        channel_names=(tuple(ch.get("label", f"channel {i}") for i, ch in enumerate(channels))
                       if "c" in axes and channels else None),
    )
