"""Cube lists: the occupied cubes found by ``vol discover``, as JSON or Zarr attributes.

A cube list names cubes of a regular grid over a volume's spatial axes::

    {"format": "volumetric-cubes", "version": 1,
     "shape": [Z, Y, X],            spatial shape of the volume
     "cube_shape": [cz, cy, cx],
     "cubes": [[i, j, k], ...],     cube i covers voxels i*cz .. (i+1)*cz - 1 along z, etc.
     "cubes_read": N, ...}          plus how it was made (seeds, threshold...)

It is written to a JSON file (``vol discover RAW OUT.json``) and may also be
stored in the attributes of a Zarr group under :data:`ATTRIBUTE`, so that
``--cubes`` of ``predict`` and ``train`` accepts either a JSON file or an
image that carries its cube list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box

FORMAT = "volumetric-cubes"
VERSION = 1
ATTRIBUTE = "volumetric_cubes"


@dataclass(frozen=True)
class CubeList:
    """Cubes of a grid over a volume.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the volume.
    cube_shape : tuple of int
        Cube shape (the last cubes along each axis may be cut by the volume).
    cubes : tuple of tuple of int
        Cube indices, sorted.
    info : dict
        Everything else stored with the list (``cubes_read``, ``seeds``...).
    """

    shape: tuple[int, ...]
    cube_shape: tuple[int, ...]
    cubes: tuple[tuple[int, ...], ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def grid(self) -> BlockGrid:
        return BlockGrid(self.shape, self.cube_shape)

    def boxes(self) -> list[Box]:
        """The voxel boxes of the listed cubes, clipped to the volume."""
        grid = self.grid
        return [grid.box(c) for c in self.cubes]

    @cached_property
    def _listed(self) -> frozenset[tuple[int, ...]]:
        return frozenset(self.cubes)

    def touches(self, box: Box) -> bool:
        """Whether ``box`` (spatial voxel coordinates) overlaps a listed cube."""
        return any(c in self._listed for c in self.grid.indices_touching(box))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            **self.info,
            "shape": list(self.shape),
            "cube_shape": list(self.cube_shape),
            "grid_shape": list(self.grid.grid_shape),
            "cubes": [list(c) for c in self.cubes],
        }


def _parse(data: Any, where: str, shape: Sequence[int] | None = None) -> CubeList:
    if not isinstance(data, dict):
        raise InputError(f"{where} is not a cube list (expected a JSON object)")
    if "shape" not in data and shape is not None:
        data = {**data, "shape": list(shape)}  # a hand-written list for a known volume
    missing = [k for k in ("shape", "cube_shape", "cubes") if k not in data]
    if missing:
        raise InputError(f"{where} is not a cube list: missing {', '.join(missing)}")
    try:
        shape = tuple(int(v) for v in data["shape"])
        cube_shape = tuple(int(v) for v in data["cube_shape"])
        cubes = tuple(sorted({tuple(int(v) for v in c) for c in data["cubes"]}))
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400 reads as inf
        raise InputError(f"{where}: shape, cube_shape and cubes must hold integers") from None
    if not shape or len(cube_shape) != len(shape) or any(v <= 0 for v in cube_shape + shape):
        raise InputError(f"{where}: invalid cube_shape {cube_shape} for shape {shape}")
    grid = BlockGrid(shape, cube_shape)
    for c in cubes:
        if len(c) != len(shape) or any(not 0 <= i < g for i, g in zip(c, grid.grid_shape)):
            raise InputError(f"{where}: cube {list(c)} is outside the cube grid {grid.grid_shape}")
    skip = {"format", "version", "shape", "cube_shape", "grid_shape", "cubes"}
    return CubeList(shape, cube_shape, cubes, {k: v for k, v in data.items() if k not in skip})


def read_cubes(path: str | Path, *, shape: Sequence[int] | None = None) -> CubeList:
    """Read a cube list from a JSON file or from a Zarr group's attributes.

    Parameters
    ----------
    path : str or Path
        A JSON file written by ``vol discover``, or a Zarr group holding the
        list under the :data:`ATTRIBUTE` attribute.
    shape : sequence of int, optional
        Spatial shape of the volume the list will be used with; a list made
        for another shape is refused, and a hand-written list without
        ``shape`` is taken to be for this one.

    Raises
    ------
    InputError
        Missing or malformed list, or a list made for another volume shape.
    """
    path = Path(path)
    if path.is_dir():
        import zarr

        try:
            attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
        except Exception as exc:  # zarr raises several types for unreadable stores
            raise InputError(f"{path}: not a readable Zarr group ({exc})") from None
        if ATTRIBUTE not in attrs:
            raise InputError(f"{path} has no stored cube list (attribute {ATTRIBUTE!r})")
        cubes = _parse(attrs[ATTRIBUTE], str(path), shape)
    else:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{path}: not a readable JSON cube list ({exc})") from None
        except RecursionError:
            raise InputError(f"{path}: not a cube list (JSON nested too deeply)") from None
        cubes = _parse(data, str(path), shape)
    if shape is not None and tuple(int(s) for s in shape) != cubes.shape:
        raise InputError(
            f"cube list {path} was made for a volume of shape {cubes.shape}, "
            f"not {tuple(int(s) for s in shape)}"
        )
    return cubes


def write_cubes(path: str | Path, cubes: CubeList) -> None:
    """Write ``cubes`` as JSON, atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cubes.to_json(), indent=1) + "\n")
    os.replace(tmp, path)


def store_cubes(group: str | Path, cubes: CubeList) -> None:
    """Store ``cubes`` in the attributes of the existing Zarr group ``group``.

    The caller checks that the group holds an image of the list's shape.
    """
    import zarr

    zarr.open_group(str(group), mode="r+").attrs[ATTRIBUTE] = cubes.to_json()
